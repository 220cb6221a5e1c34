//! The model code against outputs computed by Hugging Face transformers (`../shared/fixtures`
//! and the SciFact cross-encoder's `reference.json`): token ids exactly, logits and embeddings
//! within float tolerance, padded batches equal to pairs scored alone, and half-precision
//! checkpoints loading in f32 compute.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sieve_models::{Architecture, Encoded, Kernels, Model, Outputs, Precision, cpu_description};

/// `../shared` beside the checkout. CI has it; its absence is a failure, not a skip.
fn shared() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    assert!(
        dir.join("fixtures").is_dir(),
        "{} is missing: these tests need the shared fixtures and models beside the checkout",
        dir.display()
    );
    dir
}

/// Every kernel set this CPU runs: the reference (candle), Sieve's portable kernels, AVX2 and
/// AVX-512 where the CPU has them (said when it does not, so the fallback is what was checked).
fn kernel_sets() -> Vec<Kernels> {
    let mut sets = vec![Kernels::Reference, Kernels::Portable];
    for kernels in [Kernels::Avx2, Kernels::Avx512] {
        if kernels.is_supported() {
            sets.push(kernels);
        } else {
            eprintln!(
                "{} lacks the {} kernels' features: not checked",
                cpu_description(),
                kernels.name()
            );
        }
    }
    sets
}

fn load(name: &str, dir: &Path, max_length: Option<usize>, kernels: Kernels) -> Model {
    let model = Model::load_with_kernels(name, dir, max_length, Precision::F32, kernels).unwrap();
    assert_eq!(model.kernels(), kernels);
    model
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

/// The reference logit of a pair (`logits: [x]` in the fixtures, `logit: x` for the SciFact model).
fn logit(pair: &Value) -> f32 {
    match pair.get("logits") {
        Some(logits) => floats(logits)[0],
        None => pair["logit"].as_f64().unwrap() as f32,
    }
}

fn floats(value: &Value) -> Vec<f32> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

fn scores(model: &Model, batch: &[Encoded]) -> Vec<f32> {
    match model.forward(&batch.iter().collect::<Vec<_>>()).unwrap() {
        Outputs::Scores(scores) => scores,
        Outputs::Vectors(_) => panic!("cross-encoders score"),
    }
}

/// Checks every reference pair of a cross-encoder: ids and types, logits alone and in one
/// padded batch.
fn check_cross_encoder(model: &Model, reference: &Value, tolerance: f32) {
    let pairs = reference["pairs"].as_array().unwrap();
    let mut inputs = Vec::new();
    for (i, pair) in pairs.iter().enumerate() {
        let (query, passage) = (pair["query"].as_str().unwrap(), pair["passage"].as_str().unwrap());
        let mut encoded = model.tokenizer().encode_pair(query, passage).unwrap();
        assert_eq!(encoded.ids, ids(&pair["input_ids"]), "pair {i}: token ids");
        match pair.get("token_type_ids") {
            Some(types) => assert_eq!(encoded.type_ids, ids(types), "pair {i}: token type ids"),
            // The reference was computed from input_ids alone, where transformers defaults
            // token types to 0; feed the same.
            None => encoded.type_ids.iter_mut().for_each(|t| *t = 0),
        }
        let alone = scores(model, std::slice::from_ref(&encoded))[0];
        let expected = logit(pair);
        assert!(
            (alone - expected).abs() <= tolerance,
            "{:?} pair {i}: logit {alone} vs reference {expected}",
            model.kernels()
        );
        inputs.push(encoded);
    }
    let batched = scores(model, &inputs);
    for (i, (score, pair)) in batched.iter().zip(pairs).enumerate() {
        let expected = logit(pair);
        assert!(
            (score - expected).abs() <= tolerance,
            "pair {i} in a padded batch: {score} vs {expected}"
        );
    }
    if let Some(reference_batched) = reference.get("batched_logits_padded_to_longest") {
        for (score, expected) in batched.iter().zip(floats(reference_batched)) {
            assert!(
                (score - expected).abs() <= tolerance,
                "batched {score} vs reference batched {expected}"
            );
        }
    }
}

#[test]
fn tiny_bert_cross_encoder_matches_transformers() {
    let dir = shared().join("fixtures/tiny-bert-ce");
    for kernels in kernel_sets() {
        let model = load("tiny-bert-ce", &dir, Some(128), kernels);
        assert_eq!(model.architecture(), Architecture::BertCrossEncoder);
        assert_eq!(model.max_length(), 128);
        check_cross_encoder(&model, &read_json(&dir.join("reference.json")), 1e-4);
    }
}

#[test]
fn tiny_xlmr_cross_encoder_matches_transformers() {
    let dir = shared().join("fixtures/tiny-xlmr-ce");
    for kernels in kernel_sets() {
        let model = load("tiny-xlmr-ce", &dir, Some(128), kernels);
        assert_eq!(model.architecture(), Architecture::XlmRobertaCrossEncoder);
        check_cross_encoder(&model, &read_json(&dir.join("reference.json")), 1e-4);
    }
}

#[test]
fn scifact_cross_encoder_matches_transformers() {
    let dir = shared().join("models/sieve--sieve-ce-minilm-l6-scifact");
    for kernels in kernel_sets() {
        let model = load("sieve/sieve-ce-minilm-l6-scifact", &dir, None, kernels);
        assert_eq!(model.max_length(), 256, "from tokenizer_config.json");
        check_cross_encoder(&model, &read_json(&dir.join("reference.json")), 1e-3);
    }
}

#[test]
fn all_minilm_embeddings_match_sentence_transformers() {
    for kernels in kernel_sets() {
        check_all_minilm(kernels);
    }
}

fn check_all_minilm(kernels: Kernels) {
    let dir = shared().join("models/sentence-transformers--all-MiniLM-L6-v2");
    let model = load("sentence-transformers/all-MiniLM-L6-v2", &dir, None, kernels);
    assert_eq!(model.architecture(), Architecture::BertEmbedder);
    assert_eq!(
        model.max_length(),
        256,
        "from sentence_bert_config.json, not the tokenizer's 128 padding"
    );
    assert_eq!(model.dimension(), 384);
    let reference = read_json(&shared().join("fixtures/all-minilm-l6-v2-reference.json"));
    let sentences: Vec<&str> =
        reference["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let expected: Vec<Vec<f32>> =
        reference["embeddings"].as_array().unwrap().iter().map(floats).collect();
    // All at once (padded to the longest) and one by one must both match.
    let batched = model.embed_texts(&sentences).unwrap();
    for (i, sentence) in sentences.iter().enumerate() {
        let alone = &model.embed_texts(&[sentence]).unwrap()[0];
        for (got, name) in [(&batched[i], "batched"), (alone, "alone")] {
            assert_eq!(got.len(), 384);
            let worst =
                got.iter().zip(&expected[i]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst <= 1e-4, "{kernels:?} sentence {i} ({name}): max difference {worst}");
        }
    }
}

/// A copy of a fixture folder whose weights are converted to `dtype`.
fn converted_fixture(name: &str, dtype: candle_core::DType) -> tempfile::TempDir {
    let source = shared().join("fixtures").join(name);
    let copy = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(source.join(file), copy.path().join(file)).unwrap();
    }
    let tensors =
        candle_core::safetensors::load(source.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let converted: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .into_iter()
        .map(|(name, t)| {
            let t =
                if t.dtype() == candle_core::DType::F32 { t.to_dtype(dtype).unwrap() } else { t };
            (name, t)
        })
        .collect();
    candle_core::safetensors::save(&converted, copy.path().join("model.safetensors")).unwrap();
    copy
}

#[test]
fn half_precision_checkpoints_load_and_score_in_f32() {
    for fixture in ["tiny-bert-ce", "tiny-xlmr-ce"] {
        let reference = read_json(&shared().join("fixtures").join(fixture).join("reference.json"));
        for dtype in [candle_core::DType::F16, candle_core::DType::BF16] {
            let dir = converted_fixture(fixture, dtype);
            for kernels in kernel_sets() {
                let model = load(fixture, dir.path(), Some(128), kernels);
                // What rounding the weights implies, measured by running the f32 reference forward
                // pass (numpy) on weights rounded to each dtype: worst 0.004 for f16 and 0.088 for
                // bf16 (8-bit mantissa; these fixtures' weights are large, std 0.4).
                let tolerance = if dtype == candle_core::DType::F16 { 1e-2 } else { 1e-1 };
                check_cross_encoder(&model, &reference, tolerance);
            }
        }
    }
}

#[test]
fn unknown_architectures_and_missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = Model::load("x", dir.path(), None, Precision::F32).err().unwrap();
    assert!(err.to_string().contains("has no config.json"), "{err}");
    let source = shared().join("fixtures/tiny-bert-ce");
    for file in ["tokenizer.json", "model.safetensors"] {
        std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("config.json"), r#"{"architectures": ["GPT2LMHeadModel"]}"#)
        .unwrap();
    let err = Model::load("x", dir.path(), None, Precision::F32).err().unwrap();
    assert!(err.to_string().contains("architecture GPT2LMHeadModel is not supported"), "{err}");
}

/// The kernel sets that compute linear layers in `precision` (bf16 or int8): the portable
/// form on any CPU (bf16 emulated exactly, int8 the same integers) and the AVX-512 kernels where
/// the CPU has AVX512-BF16 and VNNI (said when it does not).
fn reduced_precision_sets(precision: Precision) -> Vec<Kernels> {
    let mut sets = vec![Kernels::Portable];
    if Kernels::Avx512.is_supported() {
        sets.push(Kernels::Avx512);
    } else {
        eprintln!(
            "no AVX512-BF16 + VNNI on {}: the avx512 {} kernels are not checked",
            cpu_description(),
            precision.name()
        );
    }
    sets
}

/// Worst and mean |logit - reference| of a cross-encoder over its reference pairs, scored in one
/// batch.
fn logit_errors(model: &Model, reference: &Value) -> (f32, f32) {
    let pairs = reference["pairs"].as_array().unwrap();
    let inputs: Vec<Encoded> = pairs
        .iter()
        .map(|pair| {
            let (query, passage) =
                (pair["query"].as_str().unwrap(), pair["passage"].as_str().unwrap());
            let mut encoded = model.tokenizer().encode_pair(query, passage).unwrap();
            if pair.get("token_type_ids").is_none() {
                encoded.type_ids.iter_mut().for_each(|t| *t = 0);
            }
            encoded
        })
        .collect();
    let errors: Vec<f32> =
        scores(model, &inputs).iter().zip(pairs).map(|(s, p)| (s - logit(p)).abs()).collect();
    let worst = errors.iter().copied().fold(0.0, f32::max);
    (worst, errors.iter().sum::<f32>() / errors.len() as f32)
}

/// Holds each cross-encoder of `cases` (name, folder under shared, window, max and mean
/// |Δlogit| gates) to its gates in `precision`, on every kernel set that computes in it.
fn check_cross_encoders(precision: Precision, cases: &[(&str, &str, Option<usize>, f32, f32)]) {
    for &(name, path, max_length, max_gate, mean_gate) in cases {
        let dir = shared().join(path);
        let reference = read_json(&dir.join("reference.json"));
        for kernels in reduced_precision_sets(precision) {
            let model =
                Model::load_with_kernels(name, &dir, max_length, precision, kernels).unwrap();
            assert_eq!((model.kernels(), model.precision()), (kernels, precision));
            let (worst, mean) = logit_errors(&model, &reference);
            let what = precision.name();
            eprintln!("{name} {kernels:?} {what}: max |Δlogit| {worst:.4}, mean {mean:.4}");
            assert!(
                worst <= max_gate && mean <= mean_gate,
                "{name} on {kernels:?} in {what}: max |Δlogit| {worst} (gate {max_gate}), mean \
                 {mean} (gate {mean_gate})"
            );
        }
    }
}

/// The bf16 gates (INFERENCE.md): max |Δlogit| ≤ 0.05 and mean ≤ 0.01 against transformers'
/// f32 logits for the trained cross-encoder, on every kernel set that computes in bf16. The
/// tiny fixtures' random weights are large (std 0.4): rounding them to bf16 alone moves their
/// logits by up to 0.088 (numpy, f32 forward pass on rounded weights), so they are held to that
/// bound and a mean of 0.03 instead.
#[test]
fn bf16_cross_encoders_meet_the_accuracy_gates() {
    check_cross_encoders(
        Precision::Bf16,
        &[
            (
                "sieve/sieve-ce-minilm-l6-scifact",
                "models/sieve--sieve-ce-minilm-l6-scifact",
                None,
                0.05,
                0.01,
            ),
            ("tiny-bert-ce", "fixtures/tiny-bert-ce", Some(128), 0.1, 0.03),
            ("tiny-xlmr-ce", "fixtures/tiny-xlmr-ce", Some(128), 0.1, 0.03),
        ],
    );
}

/// The int8 gate (issue 14): max |Δlogit| ≤ 0.1 against transformers' f32 logits (mean ≤ 0.03),
/// the linear layers calibration finds too far from bf16 staying bf16.
#[test]
fn int8_cross_encoders_meet_the_accuracy_gate() {
    check_cross_encoders(
        Precision::Int8,
        &[
            (
                "sieve/sieve-ce-minilm-l6-scifact",
                "models/sieve--sieve-ce-minilm-l6-scifact",
                None,
                0.1,
                0.03,
            ),
            ("tiny-bert-ce", "fixtures/tiny-bert-ce", Some(128), 0.1, 0.03),
            ("tiny-xlmr-ce", "fixtures/tiny-xlmr-ce", Some(128), 0.1, 0.03),
        ],
    );
}

/// Holds all-MiniLM-L6-v2 in `precision` to a lowest cosine of `gate` against
/// sentence-transformers' f32 vectors, batched and alone, on every kernel set that computes in it.
fn check_embedder(precision: Precision, gate: f32) {
    let dir = shared().join("models/sentence-transformers--all-MiniLM-L6-v2");
    let reference = read_json(&shared().join("fixtures/all-minilm-l6-v2-reference.json"));
    let sentences: Vec<&str> =
        reference["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let expected: Vec<Vec<f32>> =
        reference["embeddings"].as_array().unwrap().iter().map(floats).collect();
    for kernels in reduced_precision_sets(precision) {
        let model = Model::load_with_kernels("all-minilm", &dir, None, precision, kernels).unwrap();
        let batched = model.embed_texts(&sentences).unwrap();
        let mut worst = 1.0f32;
        for (i, sentence) in sentences.iter().enumerate() {
            let alone = &model.embed_texts(&[sentence]).unwrap()[0];
            for got in [&batched[i], alone] {
                // Both sides are unit vectors: the cosine is the dot product.
                let cosine: f32 = got.iter().zip(&expected[i]).map(|(a, b)| a * b).sum();
                worst = worst.min(cosine);
            }
        }
        let what = precision.name();
        eprintln!("all-MiniLM-L6-v2 {kernels:?} {what}: lowest cosine {worst:.5}");
        assert!(worst >= gate, "{kernels:?} {what}: lowest cosine to the reference {worst}");
    }
}

/// The embedder's bf16 gate: cosine ≥ 0.999 to sentence-transformers' f32 vectors.
#[test]
fn bf16_embeddings_meet_the_accuracy_gate() {
    check_embedder(Precision::Bf16, 0.999);
}

/// The embedder in int8: cosine ≥ 0.995 (what its calibration holds it to against bf16).
#[test]
fn int8_embeddings_meet_the_accuracy_gate() {
    check_embedder(Precision::Int8, 0.995);
}

/// bf16 asked of kernels that compute in f32 only is refused with a reason, at load.
#[test]
fn bf16_on_f32_only_kernels_is_refused_at_load() {
    let dir = shared().join("fixtures/tiny-bert-ce");
    let error = Model::load_with_kernels("tiny", &dir, Some(128), Precision::Bf16, Kernels::Avx2)
        .err()
        .expect("refused");
    let message = error.to_string();
    let reason = if Kernels::Avx2.is_supported() {
        "bf16 runs on the avx512 kernels (AVX512-BF16), the avx2 kernels compute in f32"
    } else {
        eprintln!("no AVX2 on {}: the avx2 kernels are refused first", cpu_description());
        "the avx2 kernels need a CPU feature this one lacks"
    };
    assert!(message.contains(reason), "{message}");
}

/// int8 asked of kernels without integer products is refused with a reason, at load.
#[test]
fn int8_on_kernels_without_it_is_refused_at_load() {
    let dir = shared().join("fixtures/tiny-bert-ce");
    for kernels in [Kernels::Reference, Kernels::Avx2] {
        if !kernels.is_supported() {
            eprintln!("no AVX2 on {}: the avx2 kernels are refused first", cpu_description());
            continue;
        }
        let error = Model::load_with_kernels("tiny", &dir, Some(128), Precision::Int8, kernels)
            .err()
            .expect("refused");
        let message = error.to_string();
        let reason = format!(
            "int8 runs on the avx512 kernels (AVX512-VNNI), not on the {} kernels",
            kernels.name()
        );
        assert!(message.contains(&reason), "{message}");
    }
}

/// Unset, the precision is the fastest that passes the gates for the model on its kernels:
/// on the AVX-512 set int8 for embedders and bf16 for cross-encoders, f32 on the others.
#[test]
fn auto_precision_is_chosen_per_architecture_and_kernels() {
    let embedder = shared().join("models/sentence-transformers--all-MiniLM-L6-v2");
    let cross_encoder = shared().join("fixtures/tiny-bert-ce");
    let mut cases = vec![
        (Kernels::Portable, &embedder, Precision::F32),
        (Kernels::Portable, &cross_encoder, Precision::F32),
    ];
    if Kernels::Avx512.is_supported() {
        cases.push((Kernels::Avx512, &embedder, Precision::Int8));
        cases.push((Kernels::Avx512, &cross_encoder, Precision::Bf16));
    } else {
        eprintln!(
            "no AVX512-BF16 + VNNI on {}: only the portable choice is checked",
            cpu_description()
        );
    }
    for (kernels, dir, expected) in cases {
        let model =
            Model::load_with_kernels("auto", dir, Some(128), Precision::Auto, kernels).unwrap();
        assert_eq!(model.precision(), expected, "{kernels:?} {}", dir.display());
    }
}
