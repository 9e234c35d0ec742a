// rnnsweep: the executable. The commands are in host/cli.cpp.
#include "host/cli.h"

int main(int argc, char** argv) { return rnnsweep::run_cli(argc, argv); }
