//! castellan-config
