# Runs at install time (install(CODE) in CMakeLists.txt), with NYDUS_BINDIR,
# NYDUS_CONFDIR, NYDUS_PACKAGING_SRC and NYDUS_PACKAGING_BIN set.
# file(INSTALL) prefixes $DESTDIR itself and records the install manifest.

configure_file("${NYDUS_PACKAGING_SRC}/config.toml.in" "${NYDUS_PACKAGING_BIN}/config.toml" @ONLY)
configure_file("${NYDUS_PACKAGING_SRC}/nydus-snapshotter.service.in"
               "${NYDUS_PACKAGING_BIN}/nydus-snapshotter.service" @ONLY)
configure_file("${NYDUS_PACKAGING_SRC}/nydusd-config.fusedev.json"
               "${NYDUS_PACKAGING_BIN}/nydusd-config.fusedev.json" COPYONLY)

# Installs `file` into `dir`, unless an edited copy is already there: then the
# new default goes next to it as <name>.new and the operator's copy stays.
function(nydus_install_config file dir)
  get_filename_component(name "${file}" NAME)
  set(existing "$ENV{DESTDIR}${dir}/${name}")
  if(EXISTS "${existing}")
    file(READ "${existing}" old)
    file(READ "${file}" new)
    if(NOT old STREQUAL new)
      message(STATUS "Keeping modified ${existing}; new default installed as ${name}.new")
      configure_file("${file}" "${file}.new" COPYONLY)
      file(INSTALL DESTINATION "${dir}" TYPE FILE FILES "${file}.new")
      return()
    endif()
  endif()
  file(INSTALL DESTINATION "${dir}" TYPE FILE FILES "${file}")
endfunction()

nydus_install_config("${NYDUS_PACKAGING_BIN}/config.toml" "${NYDUS_CONFDIR}")
nydus_install_config("${NYDUS_PACKAGING_BIN}/nydusd-config.fusedev.json" "${NYDUS_CONFDIR}")

file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system" TYPE FILE
     FILES "${NYDUS_PACKAGING_BIN}/nydus-snapshotter.service")
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/share/doc/nydus" TYPE FILE
     FILES "${NYDUS_PACKAGING_SRC}/containerd-nydus-proxy-plugin.toml")
