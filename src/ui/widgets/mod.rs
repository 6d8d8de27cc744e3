//! Controls several tabs share: the matrix's zoom and pan, the layer and head pickers, the
//! attention kind switch.

pub mod controls;
pub mod matrix;
