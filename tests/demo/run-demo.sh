#!/usr/bin/env bash
echo "nothing to demo yet: the demo arrives with the snapshotter (see README)"
