// The rnnsweep commands as a function: what `rnnsweep ARGS...` does, for the executable
// (host/main.cpp) and for the Python package (python/_rnnsweep.cpp), which runs them in-process.
#pragma once

namespace rnnsweep {

// Runs the command in argv (argv[0] is the program name) and returns its exit code.
// embedded = false (the executable): bad input is one line on stderr and exit code 2, a failure
// exit code 1; SIGINT, SIGTERM and SIGUSR1 stop a run after checkpointing (exit code 3).
// embedded = true (the Python package): UsageError and other exceptions propagate to the caller,
// no signal handler is installed, and a run stops when request_run_stop() is called.
int run_cli(int argc, char** argv, bool embedded = false);

}  // namespace rnnsweep
