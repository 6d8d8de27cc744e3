//! bertscope: run transformer models (BERT, DistilBERT, RoBERTa, XLM-RoBERTa, GPT-2) locally and
//! see inside them.
//!
//! The library holds everything the app and the command line share. [`model`] finds, loads and
//! runs checkpoints while capturing every attention map; [`export`] turns captured data into
//! files. Neither depends on the GUI.

pub mod analysis;
#[cfg(feature = "gui")]
pub mod app;
pub mod bench;
pub mod export;
pub mod model;
pub mod render;
#[cfg(feature = "gui")]
pub mod ui;
pub mod views;
pub mod worker;
