#include <gtest/gtest.h>

// Being written.
TEST(Pending, NotWrittenYet) { GTEST_SKIP() << "not written yet"; }
