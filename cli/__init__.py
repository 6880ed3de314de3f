"""The `abi` command line: options in, one library call, a rendered result out."""
