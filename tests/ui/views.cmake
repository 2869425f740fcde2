# Tests of the secondary views (ui/views): one Qt Test executable per view.
# Included from tests/ui/CMakeLists.txt; paths are relative to this file.

set(FEC_VIEWS_TEST_DIR ${CMAKE_CURRENT_LIST_DIR})

# Headless widget tests.
foreach(test test_views_statistics test_views_heads test_views_export)
  add_executable(${test} ${FEC_VIEWS_TEST_DIR}/${test}.cpp ${FEC_VIEWS_TEST_DIR}/views_fixture.h)
  set_target_properties(${test} PROPERTIES AUTOMOC ON)
  target_link_libraries(${test} PRIVATE fec::ui_views Qt6::Test)
  target_include_directories(${test} PRIVATE ${FEC_VIEWS_TEST_DIR} ${FEC_VIEWS_TEST_DIR}/../common)
  target_compile_definitions(${test} PRIVATE FEC_REFERENCE_DIR_DEFAULT="${FEC_REFERENCE_DIR}")
  add_test(NAME ${test} COMMAND ${test})
  set_tests_properties(${test} PROPERTIES LABELS ui
    ENVIRONMENT "QT_QPA_PLATFORM=offscreen;OMP_WAIT_POLICY=PASSIVE")
endforeach()

# The VTK view needs a real X display (Debian's VTK is GLX only): with no DISPLAY the test
# starts its own Xvfb when xvfb-run exists, and skips with a message otherwise.
add_executable(test_views_pyramid3d ${FEC_VIEWS_TEST_DIR}/test_views_pyramid3d.cpp ${FEC_VIEWS_TEST_DIR}/views_fixture.h)
set_target_properties(test_views_pyramid3d PROPERTIES AUTOMOC ON)
target_link_libraries(test_views_pyramid3d PRIVATE fec::ui_views Qt6::Test)
target_include_directories(test_views_pyramid3d PRIVATE ${FEC_VIEWS_TEST_DIR} ${FEC_VIEWS_TEST_DIR}/../common)
target_compile_definitions(test_views_pyramid3d PRIVATE FEC_REFERENCE_DIR_DEFAULT="${FEC_REFERENCE_DIR}")
add_test(NAME test_views_pyramid3d
  COMMAND sh -c "if [ -z \"$DISPLAY\" ] && command -v xvfb-run >/dev/null 2>&1; then exec xvfb-run -a -s '-screen 0 1280x800x24' \"$0\"; else exec \"$0\"; fi"
          $<TARGET_FILE:test_views_pyramid3d>)
set_tests_properties(test_views_pyramid3d PROPERTIES LABELS "ui;gl"
  ENVIRONMENT "QT_QPA_PLATFORM=xcb;OMP_WAIT_POLICY=PASSIVE")
if(CMAKE_CXX_FLAGS MATCHES "-fsanitize=[a-z,]*address")
  # asan preset: AddressSanitizer stays on, LeakSanitizer off for this one test. The GL stack
  # loads ICU with dlopen and unloads it before the leak report, so its two cached 56-byte blocks
  # come from an "<unknown module>" that no suppression can name (docs/reliability.md).
  set_property(TEST test_views_pyramid3d APPEND PROPERTY ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0")
endif()
