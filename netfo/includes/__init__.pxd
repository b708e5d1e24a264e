# C declarations of the fast path, grouped by header family (as uvloop's
# uvloop/includes/*.pxd): system.pxd (libc/POSIX), linux.pxd (Linux UAPI),
# atomics.pxd (GCC __atomic builtins).  Build-time only: nothing here is
# installed or imported at run time.
