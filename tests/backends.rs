//! The two backends against each other at full size: a random-weight checkpoint with bert-base's
//! shapes (12 layers, hidden 768, 12 heads, intermediate 3072, 512 positions; a small vocabulary),
//! written here with the safetensors crate, run at 8, 128 and 512 tokens on the tuned CPU
//! backend and on candle's ops. Attention must agree to 1e-5, hidden states to 1e-4, and the
//! masked-LM head's top-5 exactly with probabilities to 1e-5; a masked-LM logit's gradients at
//! 128 tokens to 1e-4 of the largest.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bertscope::model::attribution::AttributionOptions;
use bertscope::model::{CapturedArray, DeviceChoice, ForwardPath, LoadedModel, ModelSource};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

const HIDDEN: usize = 768;
const LAYERS: usize = 12;
const HEADS: usize = 12;
const INTERMEDIATE: usize = 3072;
const POSITIONS: usize = 512;

/// Deterministic uniform noise (xorshift64*), scaled to `[-scale, scale]` around `center`.
struct Noise(u64);

impl Noise {
    fn values(&mut self, count: usize, center: f32, scale: f32) -> Vec<f32> {
        (0..count)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                let unit =
                    (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32;
                center + scale * (2.0 * unit - 1.0)
            })
            .collect()
    }
}

/// Writes a `BertForPreTraining`-shaped checkpoint (MLM decoder tied, NSP head) into `folder`,
/// with the tokenizer of the tiny-modern fixture.
fn write_bert_base_shaped(folder: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-modern");
    for name in ["tokenizer.json", "tokenizer_config.json", "vocab.txt"] {
        std::fs::copy(fixture.join(name), folder.join(name)).unwrap();
    }
    let vocab = std::fs::read_to_string(fixture.join("vocab.txt"))
        .unwrap()
        .lines()
        .count();
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    let mut add = |name: String, shape: Vec<usize>, center: f32, scale: f32| {
        let values = noise.values(shape.iter().product(), center, scale);
        tensors.insert(name, (shape, values));
    };
    let dense =
        |add: &mut dyn FnMut(String, Vec<usize>, f32, f32), name: &str, o: usize, i: usize| {
            // Large query and key weights make attention peaked, which catches softmax and
            // masking errors that near-uniform attention hides.
            let scale = if name.ends_with("query") || name.ends_with("key") {
                0.1
            } else {
                0.06
            };
            add(format!("{name}.weight"), vec![o, i], 0.0, scale);
            add(format!("{name}.bias"), vec![o], 0.0, 0.02);
        };
    let norm = |add: &mut dyn FnMut(String, Vec<usize>, f32, f32), name: &str| {
        add(format!("{name}.weight"), vec![HIDDEN], 1.0, 0.1);
        add(format!("{name}.bias"), vec![HIDDEN], 0.0, 0.1);
    };
    add(
        "bert.embeddings.word_embeddings.weight".into(),
        vec![vocab, HIDDEN],
        0.0,
        0.1,
    );
    add(
        "bert.embeddings.position_embeddings.weight".into(),
        vec![POSITIONS, HIDDEN],
        0.0,
        0.1,
    );
    add(
        "bert.embeddings.token_type_embeddings.weight".into(),
        vec![2, HIDDEN],
        0.0,
        0.1,
    );
    norm(&mut add, "bert.embeddings.LayerNorm");
    for layer in 0..LAYERS {
        let name = |part: &str| format!("bert.encoder.layer.{layer}.{part}");
        for part in ["query", "key", "value"] {
            dense(
                &mut add,
                &name(&format!("attention.self.{part}")),
                HIDDEN,
                HIDDEN,
            );
        }
        dense(&mut add, &name("attention.output.dense"), HIDDEN, HIDDEN);
        norm(&mut add, &name("attention.output.LayerNorm"));
        dense(&mut add, &name("intermediate.dense"), INTERMEDIATE, HIDDEN);
        dense(&mut add, &name("output.dense"), HIDDEN, INTERMEDIATE);
        norm(&mut add, &name("output.LayerNorm"));
    }
    dense(&mut add, "bert.pooler.dense", HIDDEN, HIDDEN);
    dense(&mut add, "cls.predictions.transform.dense", HIDDEN, HIDDEN);
    norm(&mut add, "cls.predictions.transform.LayerNorm");
    add("cls.predictions.bias".into(), vec![vocab], 0.0, 0.02);
    dense(&mut add, "cls.seq_relationship", 2, HIDDEN);

    let bytes: BTreeMap<&str, Vec<u8>> = tensors
        .iter()
        .map(|(name, (_, values))| {
            (
                name.as_str(),
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, (shape, _))| {
            let data = &bytes[name.as_str()];
            (
                name.as_str(),
                TensorView::new(Dtype::F32, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &folder.join("model.safetensors")).unwrap();
    let config = serde_json::json!({
        "architectures": ["BertForPreTraining"],
        "model_type": "bert",
        "vocab_size": vocab,
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": POSITIONS,
        "type_vocab_size": 2,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
    });
    std::fs::write(folder.join("config.json"), config.to_string()).unwrap();
}

fn max_abs_diff(a: &CapturedArray, b: &CapturedArray) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_host().unwrap(), b.to_host().unwrap());
    slice_diff(a.values(), b.values())
}

/// The largest difference; NaN, infinities and a length mismatch fail (`common::max_abs_diff`).
fn slice_diff(a: &[f32], b: &[f32]) -> f64 {
    common::max_abs_diff("tuned against candle", a, b)
}

#[test]
fn backends_agree_on_a_bert_base_shaped_checkpoint_at_8_128_and_512_tokens() {
    let folder = tempfile::tempdir().unwrap();
    write_bert_base_shaped(folder.path());
    let [tuned, candle] = [ForwardPath::Auto, ForwardPath::Candle].map(|path| {
        LoadedModel::load_with(
            &ModelSource::Folder(folder.path().to_owned()),
            DeviceChoice::Cpu,
            path,
            &mut |_| {},
        )
        .unwrap()
    });
    assert!(tuned.has_mlm_head() && tuned.has_nsp_head());
    // The two backward passes (written out on the tuned path, candle's autograd on its own)
    // give the same gradients at full size, relative to the largest.
    let input = bertscope::bench::synthetic_input(&tuned, 128).unwrap();
    let options = AttributionOptions {
        target: "mlm:64".parse().unwrap(),
        ig_steps: 0,
        occlusion: false,
    };
    let [a, b] = [&tuned, &candle].map(|model| {
        model
            .attribution(&input, &options, &mut |_, _| true)
            .unwrap()
    });
    assert_eq!(a.target.id, b.target.id, "the same top token");
    for (what, x, y) in [
        ("gradient × input", &a.grad_x_input, &b.grad_x_input),
        ("gradient norm", &a.grad_norm, &b.grad_norm),
    ] {
        let largest = y.iter().fold(0f32, |m, v| m.max(v.abs()));
        let difference = slice_diff(x, y);
        eprintln!("{what}: {difference:.1e} of {largest:.1e}");
        assert!(
            largest > 0.0 && difference <= 1e-4 * f64::from(largest),
            "{what}: {difference:e}"
        );
    }
    for tokens in [8, 128, 512] {
        let input = bertscope::bench::synthetic_input(&tuned, tokens).unwrap();
        let positions = [1, tokens / 2, tokens - 2];
        let a = tuned.run(input.clone(), &positions, 5).unwrap();
        let b = candle.run(input, &positions, 5).unwrap();
        assert_eq!(a.len(), tokens);
        let peak = a.attention(0, 0).iter().copied().fold(0.0, f32::max);
        assert!(
            peak > 0.2,
            "attention is peaked enough to catch errors ({peak})"
        );
        let attention = max_abs_diff(&a.attentions, &b.attentions);
        let hidden = max_abs_diff(&a.hidden_states, &b.hidden_states);
        eprintln!("{tokens} tokens: attention {attention:.1e}, hidden {hidden:.1e}, peak {peak}");
        assert!(
            attention <= 1e-5,
            "{tokens} tokens: attention differs by {attention:e}"
        );
        assert!(
            hidden <= 1e-4,
            "{tokens} tokens: hidden states differ by {hidden:e}"
        );
        assert!(max_abs_diff(&a.queries, &b.queries) <= 1e-4);
        assert!(max_abs_diff(&a.keys, &b.keys) <= 1e-4);
        // candle keeps its captures on its device (here the CPU) and answers views from there;
        // the tuned backend's are host arrays. Both answer every question a view asks alike.
        assert!(a.attentions.is_on_host() && !b.attentions.is_on_host());
        for layer in [0, 11] {
            assert!(slice_diff(a.attention(layer, 5), b.attention(layer, 5)) <= 1e-5);
            assert!(slice_diff(&a.attention_mean(layer), &b.attention_mean(layer)) <= 1e-5);
            let (thumb_a, side_a) = a.attention_thumbnail(layer, 7, 96);
            let (thumb_b, side_b) = b.attention_thumbnail(layer, 7, 96);
            assert_eq!(side_a, side_b);
            assert!(side_a <= 96 && side_a * tokens.div_ceil(96) >= tokens);
            assert!(slice_diff(&thumb_a, &thumb_b) <= 1e-5);
        }
        let (mlm_a, mlm_b) = (a.mlm.unwrap(), b.mlm.unwrap());
        assert_eq!(mlm_a.len(), 3);
        for (x, y) in common::pairs("MLM positions", &mlm_a, &mlm_b) {
            let ids = |p: &bertscope::model::TokenPrediction| -> Vec<u32> {
                p.top_k.iter().map(|c| c.id).collect()
            };
            assert_eq!(
                ids(x),
                ids(y),
                "{tokens} tokens: MLM top-5 at {}",
                x.position
            );
            for (c, d) in x.top_k.iter().zip(&y.top_k) {
                common::assert_near("MLM probability", c.prob.into(), d.prob.into(), 1e-5);
            }
        }
    }
}
