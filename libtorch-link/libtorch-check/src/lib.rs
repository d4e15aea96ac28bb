//! Nothing at run time: the build script of this crate checks libtorch before anything
//! compiles against it (it has no dependencies, so it runs first), and fails the build
//! with the command to run instead of a C++ compiler error.
