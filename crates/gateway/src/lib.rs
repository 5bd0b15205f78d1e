//! castellan-gateway
