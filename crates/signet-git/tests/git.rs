//! signet-git's tests, one binary: the fuzz corpus replayed, property
//! tests of the readers, and pushes and fetches by the real `git`.

mod fuzz_corpus;
mod properties;
mod real_git;
