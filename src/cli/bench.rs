//! `bertscope bench`: the forward pass, timed, and optionally the analyses, the overview's
//! frames and the app's keystrokes.

use std::time::Instant;

use clap::Args;

use bertscope::bench;
use bertscope::model::LoadedModel;

use super::{load, ModelArgs};

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Tokens per input, [CLS] and [SEP] included.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Timed runs, after two untimed warm-up runs.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Also time the analyses: the value norms inside the forward (value_norms_ms), rollout,
    /// head statistics, norm maps and the logit lens after it (analyses_ms), their share of
    /// the forward, and attention flow into one token (flow_ms); medians of --iters runs.
    #[arg(long)]
    pub analyses: bool,
    /// Also time explaining the default target: gradient × input and its norm (gradient_ms,
    /// the median of --iters runs), integrated gradients with 50 steps (ig_ms, one run) and activation patching of every layer's positions and heads (patching_ms,
    /// one run, against the input with its middle token changed).
    #[arg(long)]
    pub attribution: bool,
    /// Time the dense-layer matrix product instead of a model: GFLOP/s at 2048³ and at the
    /// model's four dense shapes for --seq-len tokens (compare `tools/bench_reference.py --gemm`,
    /// torch's sgemm on the same shapes).
    #[arg(long)]
    pub gemm: bool,
    /// Time fine-tuning steps instead of the forward: the model as a two-label classifier on
    /// batches of this many texts of --seq-len tokens; prints each step's median (train_step_ms)
    /// and the process's peak memory (compare `tools/bench_reference.py --train`).
    #[arg(long, value_name = "BATCH")]
    pub train: Option<usize>,
    /// Also time generating this many tokens after an input of --seq-len tokens, greedy with
    /// the key/value cache (causal models): the first token (first_token_ms) and each later one
    /// (per_token_ms), medians over --iters runs.
    #[arg(long, value_name = "TOKENS")]
    pub generate: Option<usize>,
    /// Also time this many frames of the app's overview (every layer × head), headless.
    #[cfg(feature = "gui")]
    #[arg(long, value_name = "FRAMES")]
    pub overview_frames: Option<usize>,
    /// Also type this many characters into the app, headless, timing each from keystroke to
    /// the frame that draws its result (prints keystroke_ms, the median).
    #[cfg(feature = "gui")]
    #[arg(long, value_name = "KEYS")]
    pub keystroke: Option<usize>,
    /// The tab open while --keystroke types (attribution: each keystroke waits for gradient ×
    /// input too).
    #[cfg(feature = "gui")]
    #[arg(long, value_enum, default_value_t = bertscope::views::View::Heatmap)]
    pub keystroke_view: bertscope::views::View,
}

/// `bench --train`: fine-tuning steps of the model as a classifier, and the peak memory.
fn bench_train(args: &BenchArgs, batch: usize) -> anyhow::Result<()> {
    anyhow::ensure!(batch > 0, "--train takes the batch size, at least 1");
    let source = bertscope::model::ModelSource::parse(&args.model.model)?;
    let device = args.model.device.parse()?;
    print_isa();
    println!(
        "fine-tuning {} as a 2-label classifier, batch {batch} x {} tokens, {} threads",
        args.model.model,
        args.seq_len,
        rayon::current_num_threads()
    );
    let times =
        bertscope::model::finetune::bench_steps(&source, args.seq_len, batch, args.iters, device)?;
    let runs: Vec<String> = times.iter().map(|ms| format!("{ms:.1}")).collect();
    println!("train_step_runs_ms {}", runs.join(" "));
    println!("train_step_ms {:.1}", bench::median(&times));
    // The kernel's high-water mark of the process's resident memory.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|line| line.starts_with("VmHWM:")) {
            let kb: f64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse().ok())
                .unwrap_or(0.0);
            println!("peak_memory_mb {:.0}", kb / 1024.0);
        }
    }
    Ok(())
}

/// `bench --gemm`: the dense-layer product's GFLOP/s at 2048³ and at the model's dense shapes.
fn bench_gemm(args: &BenchArgs) -> anyhow::Result<()> {
    let config = bertscope::model::ModelConfig::from_file(
        &bertscope::model::source::resolve(
            &bertscope::model::ModelSource::parse(&args.model.model)?,
            &mut |_| {},
        )?
        .config,
    )?;
    let (hidden, tokens) = (config.hidden_size, args.seq_len);
    // A gated block's first layer computes the gate and the up projection in one product.
    let inner = config.intermediate_size;
    let ffn_in = if config.architecture.gated_ffn {
        2 * inner
    } else {
        inner
    };
    print_isa();
    println!(
        "dense products W·Xᵀ (m outputs, n tokens, k inputs), {} threads, median of {} runs",
        rayon::current_num_threads(),
        args.iters
    );
    let shapes = [
        ("cube", 2048, 2048, 2048),
        (
            "qkv",
            config.query_width() + 2 * config.kv_width(),
            tokens,
            hidden,
        ),
        ("attention_output", hidden, tokens, config.query_width()),
        ("ffn_in", ffn_in, tokens, hidden),
        ("ffn_out", hidden, tokens, inner),
        ("vocabulary", config.vocab_size, tokens, hidden),
    ];
    for (name, m, n, k) in shapes {
        let ms = if name == "vocabulary" {
            bertscope::model::backend::cpu::time_vocabulary_product(m, n, k, args.iters)
        } else {
            bertscope::model::backend::cpu::time_dense_product(m, n, k, args.iters)
        };
        let gflops = 2.0 * (m * n * k) as f64 / (ms * 1e6);
        // Three significant digits: a tiny shape on a busy machine runs at a fraction of one.
        let digits = if gflops >= 100.0 {
            0
        } else if gflops >= 10.0 {
            1
        } else {
            3
        };
        println!("gemm {name} {m}x{n}x{k} {ms:.3} ms {gflops:.digits$} GFLOP/s");
    }
    Ok(())
}

/// `bench --analyses`: prints what the analyses add to the forward.
fn bench_analyses(
    model: &LoadedModel,
    input: &bertscope::model::tokenizer::EncodedText,
    iters: usize,
) -> anyhow::Result<()> {
    let times = bench::analyses::time_analyses(model, input, iters)?;
    let (plain, with_extras) = (times.forward_ms, times.forward_with_ms);
    println!(
        "in_forward_ms {:.3} (value norms{}: forward {with_extras:.1} ms with them, {plain:.1} ms without, alternated)",
        times.in_forward_ms(),
        if times.lens_in_forward {
            " and the logit lens at one position"
        } else {
            ""
        }
    );
    println!(
        "analyses_ms {:.3} (rollout {:.1}, head statistics {:.1}, norm maps {:.1})",
        times.after_ms(),
        times.rollout_ms,
        times.head_stats_ms,
        times.norm_maps_ms
    );
    if let Some(lens_apart) = times.lens_apart_ms {
        println!("lens_apart_ms {lens_apart:.3} (the lens computed after the forward instead)");
    }
    println!(
        "analyses_share {:.1}% of the forward",
        times.share_percent()
    );
    println!(
        "flow_ms {:.3} (into token 0 from every token)",
        times.flow_ms
    );
    Ok(())
}

/// The first line of every benchmark: the instruction-set level the CPU kernels run.
fn print_isa() {
    use bertscope::model::backend::cpu::isa::{isa, Isa, ISA_VARIABLE};
    println!(
        "isa {} (this CPU runs {}; {ISA_VARIABLE} caps it)",
        isa().name(),
        Isa::detected().name()
    );
}

/// What `bench --keystroke` starts from before typing: a sentence of about 16 tokens.
#[cfg(feature = "gui")]
const KEYSTROKE_TEXT: &str = "The teacher explained how attention heads relate words";

/// Runs `bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.iters > 0, "--iters must be at least 1");
    if args.gemm {
        return bench_gemm(&args);
    }
    if let Some(batch) = args.train {
        return bench_train(&args, batch);
    }
    let started = Instant::now();
    let model = load(&args.model)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let input = bench::synthetic_input(&model, args.seq_len)?;
    let config = model.config();
    print_isa();
    println!(
        "model {} ({}, {} layers x {} heads, hidden {}), device {} ({}), {} threads",
        model.name(),
        model.family(),
        config.num_hidden_layers,
        config.num_attention_heads,
        config.hidden_size,
        model.device(),
        model.backend_name(),
        rayon::current_num_threads()
    );
    println!("load_ms {load_ms:.1}");
    let timings = bench::time_forward(&model, &input, 2, args.iters)?;
    let runs: Vec<String> = timings
        .runs_ms
        .iter()
        .map(|ms| format!("{ms:.1}"))
        .collect();
    println!(
        "seq_len {} iters {} runs_ms [{}]",
        args.seq_len,
        args.iters,
        runs.join(", ")
    );
    if args.analyses {
        bench_analyses(&model, &input, args.iters)?;
    }
    if args.attribution {
        // Each figure prints as soon as it is measured: patching at 128 tokens of bert-base
        // takes minutes.
        let gradient_ms = bench::attribution::time_gradient(&model, &input, args.iters)?;
        println!(
            "gradient_ms {gradient_ms:.3} ({:.2}x the forward)",
            gradient_ms / timings.median_ms()
        );
        let ig_ms = bench::attribution::time_integrated_gradients(&model, &input)?;
        println!("ig_ms {ig_ms:.1} (50 steps)");
        match bench::attribution::time_patching(&model, &input) {
            (Ok(ms), runs) => println!("patching_ms {ms:.1} ({runs} patched runs)"),
            (Err(why), _) => println!("patching_ms n/a ({why})"),
        }
    }
    if let Some(new_tokens) = args.generate {
        let times = bench::generate::time_generation(&model, &input, new_tokens, args.iters)?;
        println!(
            "first_token_ms {:.3} ({} prompt tokens; the forward with every map: {:.1} ms)",
            times.first_ms,
            input.ids.len(),
            timings.median_ms()
        );
        println!(
            "per_token_ms {:.3} ({} new tokens, greedy, with each step's attention rows)",
            times.per_token_ms, times.new_tokens
        );
    }
    #[cfg(feature = "gui")]
    if let Some(frames) = args.overview_frames {
        let analysis = model.run(input.clone(), &[], 5)?;
        let times = bertscope::bench::overview::measure_frame_ms(&analysis, frames);
        println!(
            "overview_frame_ms {:.3} filling {} frames, slowest {:.1} ms ({} layers x {} heads, {} tokens, 1400x900, thumbnails at most {} MB)",
            times.frame_ms,
            times.filling_frames,
            times.slowest_filling_ms,
            analysis.layers(),
            analysis.heads(),
            analysis.len(),
            analysis.layers()
                * analysis.heads()
                * bertscope::views::overview::THUMBNAIL_CELLS.min(analysis.len()).pow(2)
                * 4
                / 1_000_000
        );
    }
    #[cfg(feature = "gui")]
    if let Some(keys) = args.keystroke {
        let launch = bertscope::app::LaunchOptions {
            model: Some(args.model.model.clone()),
            text: Some(KEYSTROKE_TEXT.to_owned()),
            device: args.model.device.parse()?,
            view: Some(args.keystroke_view),
            ..Default::default()
        };
        let times = bertscope::bench::keystroke::measure_keystroke_ms(launch, keys.max(1))?;
        let runs: Vec<String> = times.iter().map(|ms| format!("{ms:.1}")).collect();
        println!("keystrokes {} runs_ms [{}]", times.len(), runs.join(", "));
        println!("keystroke_ms {:.3}", bench::median(&times));
    }
    println!(
        "compute_ms {:.3} transfer_ms {:.3}",
        bench::median(&timings.compute_ms),
        bench::median(&timings.transfer_ms)
    );
    println!("median_ms {:.3}", timings.median_ms());
    Ok(())
}
