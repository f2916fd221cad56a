//! questline
