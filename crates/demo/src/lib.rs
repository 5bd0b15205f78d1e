//! castellan-demo
