//! Hub ids resolve through the standard Hugging Face cache (`HF_HOME`) without the network.
//! In its own test binary because it sets process-wide environment variables.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use bertscope::model::{AnalysisRequest, DeviceChoice, LoadedModel, ModelSource};

#[test]
fn cached_hub_model_loads_offline() {
    let home = tempfile::tempdir().unwrap();
    // The layout huggingface_hub writes: refs/main names the snapshot holding the files.
    let repo = home.path().join("hub/models--example--tiny-bert");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-legacy");
    for entry in std::fs::read_dir(fixture).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, snapshot.join(path.file_name().unwrap())).unwrap();
    }
    // Edition 2021: setting variables is safe; this binary has no other threads reading them.
    std::env::set_var("HF_HOME", home.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");

    let source = ModelSource::parse("example/tiny-bert").unwrap();
    assert_eq!(source, ModelSource::Hub("example/tiny-bert".into()));
    let model = LoadedModel::load(&source, DeviceChoice::Cpu, &mut |_| {}).unwrap();
    assert_eq!(model.name(), "example/tiny-bert");
    assert!(
        model.has_mlm_head() && model.has_nsp_head(),
        "sharded legacy checkpoint from the cache"
    );
    let analysis = model
        .analyze(&AnalysisRequest::new("the [MASK] sat"))
        .unwrap();
    assert_eq!(analysis.mlm.unwrap().len(), 1);

    let missing = LoadedModel::load(
        &ModelSource::Hub("example/other".into()),
        DeviceChoice::Cpu,
        &mut |_| {},
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        missing.contains("example/other: not in the Hugging Face cache and HF_HUB_OFFLINE is set"),
        "{missing}"
    );
}
