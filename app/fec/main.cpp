#include "fec/cli/cli.h"
#include "fec/runtime.h"

int main(int argc, char** argv)
{
    fec::ensurePassiveOpenMp(argc, argv);
    return fec::cli::run(argc, argv);
}
