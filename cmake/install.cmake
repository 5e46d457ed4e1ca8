# `cmake --install BUILD [--prefix DIR]`: the kiln command, libkiln (static), its public headers,
# a CMake package (find_package(kiln) gives kiln::kiln) and a pkg-config file (kiln.pc), so that
# other C projects can link libkiln either way. Included by the top CMakeLists.txt.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set_target_properties(libkiln PROPERTIES EXPORT_NAME kiln)
install(TARGETS kiln RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS libkiln EXPORT kilnTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/include/kiln ${CMAKE_BINARY_DIR}/include/kiln
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")

set(KILN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/kiln)
install(EXPORT kilnTargets NAMESPACE kiln:: DESTINATION ${KILN_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/kilnConfig.cmake.in
                              ${CMAKE_BINARY_DIR}/kilnConfig.cmake
                              INSTALL_DESTINATION ${KILN_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/kilnConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/kilnConfig.cmake ${CMAKE_BINARY_DIR}/kilnConfigVersion.cmake
        DESTINATION ${KILN_CMAKE_DIR})

# kiln.pc: libkiln is static, so Libs names everything it links (the libraries CMake found, by
# their full paths), and a plain `pkg-config --libs kiln` is enough to link a program.
set(KILN_PC_LIBS "")
foreach(lib ${BLAS_LIBRARIES} ${MPI_C_LIBRARIES} ${HDF5_C_LIBRARIES} ${ZLIB_LIBRARIES}
            ${YAML_LINK_LIBRARIES} ${JANSSON_LINK_LIBRARIES} ${MHD_LINK_LIBRARIES}
            ${SQLITE3_LINK_LIBRARIES} ${NETTLE_LINK_LIBRARIES} ${PROTOBUFC_LINK_LIBRARIES})
  string(APPEND KILN_PC_LIBS " ${lib}")
endforeach()
if(KILN_HAVE_CUDA)
  string(APPEND KILN_PC_LIBS " -L${CUDAToolkit_LIBRARY_DIR} -lcublas -lcudart -lstdc++")
endif()
if(KILN_HAVE_NCCL)
  string(APPEND KILN_PC_LIBS " ${KILN_NCCL_LIB}")
endif()
string(APPEND KILN_PC_LIBS " -lpthread -lm")
# The prefix is found from the file's own place, so that `cmake --install --prefix DIR` works.
file(RELATIVE_PATH KILN_PC_UP /p/${CMAKE_INSTALL_LIBDIR}/pkgconfig /p)
configure_file(${CMAKE_CURRENT_LIST_DIR}/kiln.pc.in ${CMAKE_BINARY_DIR}/kiln.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/kiln.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
