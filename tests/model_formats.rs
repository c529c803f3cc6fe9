//! Checkpoint layouts and malformed inputs: MXFP4 built from known codes reproduces the bf16
//! model exactly, shards load like one file, and every bad input is an error that names the
//! file, the tensor and what was expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use half::bf16;
use ossterm::model::{GptOss, Logits, ModelError, Precision};
use rand::{Rng, SeedableRng};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

type Tensors = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read(dir: &Path) -> Tensors {
    let bytes = std::fs::read(dir.join("model.safetensors")).expect("read");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse");
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                (view.dtype(), view.shape().to_vec(), view.data().to_vec()),
            )
        })
        .collect()
}

fn write(path: &Path, tensors: &Tensors) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, (dtype, shape, data))| {
            (
                name.clone(),
                TensorView::new(*dtype, shape.clone(), data).expect("view"),
            )
        })
        .collect();
    safetensors::tensor::serialize_to_file(views, None, path).expect("write");
}

/// A copy of `source`'s config (edited by `edit`) and the given tensors in a temp folder.
fn model_dir(
    source: &str,
    tensors: &Tensors,
    edit: impl FnOnce(&mut serde_json::Value),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(source).join("config.json")).expect("config"),
    )
    .expect("json");
    edit(&mut config);
    std::fs::write(dir.path().join("config.json"), config.to_string()).expect("write config");
    write(&dir.path().join("model.safetensors"), tensors);
    dir
}

fn logits(dir: &Path, ids: &[u32]) -> Tensor {
    let model = GptOss::load(dir, &Device::Cpu, Precision::F32).expect("loads");
    let mut cache = model.new_cache(ids.len()).expect("cache");
    model
        .forward(ids, &mut cache, Logits::All)
        .expect("forward")
}

fn load_err(dir: &Path) -> String {
    match GptOss::load(dir, &Device::Cpu, Precision::Default) {
        Ok(_) => panic!("{} should not load", dir.display()),
        Err(e) => {
            let _: &ModelError = &e;
            e.to_string()
        }
    }
}

const IDS: [u32; 12] = [529, 247, 268, 531, 395, 498, 18, 75, 431, 497, 130, 163];

/// Random MXFP4 weights for `[e, out, in]`: (blocks, scales, dequantized values), the values
/// computed here from the E2M1 table, independently of the loader.
fn mxfp4(
    rng: &mut rand::rngs::StdRng,
    e: usize,
    out: usize,
    inp: usize,
) -> (Vec<u8>, Vec<u8>, Vec<f32>) {
    const TABLE: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
    let mut blocks = vec![0u8; e * out * inp / 2];
    rng.fill(&mut blocks[..]);
    let scales: Vec<u8> = (0..e * out * inp / 32)
        .map(|_| rng.random_range(120u8..126))
        .collect();
    let values = (0..e * out * inp)
        .map(|k| {
            let byte = blocks[k / 2];
            let code = if k % 2 == 0 { byte & 0xF } else { byte >> 4 };
            let v = TABLE[(code & 7) as usize] * 2f32.powi(scales[k / 32] as i32 - 127);
            if code & 8 != 0 { -v } else { v }
        })
        .collect();
    (blocks, scales, values)
}

fn bf16_bytes(values: impl Iterator<Item = f32>) -> Vec<u8> {
    values
        .flat_map(|v| bf16::from_f32(v).to_le_bytes())
        .collect()
}

#[test]
fn mxfp4_layout_reproduces_the_bf16_model() {
    let base = read(&fixture("tiny-a-bf16"));
    let (e, h, i) = (8usize, 128usize, 128usize);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut as_bf16 = base.clone();
    let mut as_mxfp4 = base.clone();
    for layer in 0..4 {
        let p = format!("model.layers.{layer}.mlp.experts");
        // gate_up: MXFP4 [E, 2I(out), H(in)] -> bf16 [E, H, 2I].
        let (blocks, scales, d) = mxfp4(&mut rng, e, 2 * i, h);
        let w = (0..e * h * 2 * i).map(|k| {
            let (ex, rest) = (k / (h * 2 * i), k % (h * 2 * i));
            let (hh, c) = (rest / (2 * i), rest % (2 * i));
            d[ex * 2 * i * h + c * h + hh]
        });
        as_bf16.insert(
            format!("{p}.gate_up_proj"),
            (Dtype::BF16, vec![e, h, 2 * i], bf16_bytes(w)),
        );
        as_mxfp4.remove(&format!("{p}.gate_up_proj"));
        as_mxfp4.insert(
            format!("{p}.gate_up_proj_blocks"),
            (Dtype::U8, vec![e, 2 * i, h / 32, 16], blocks),
        );
        as_mxfp4.insert(
            format!("{p}.gate_up_proj_scales"),
            (Dtype::U8, vec![e, 2 * i, h / 32], scales),
        );
        // down: MXFP4 [E, H(out), I(in)] -> bf16 [E, I, H].
        let (blocks, scales, d) = mxfp4(&mut rng, e, h, i);
        let w = (0..e * i * h).map(|k| {
            let (ex, rest) = (k / (i * h), k % (i * h));
            let (ii, hh) = (rest / h, rest % h);
            d[ex * h * i + hh * i + ii]
        });
        as_bf16.insert(
            format!("{p}.down_proj"),
            (Dtype::BF16, vec![e, i, h], bf16_bytes(w)),
        );
        as_mxfp4.remove(&format!("{p}.down_proj"));
        as_mxfp4.insert(
            format!("{p}.down_proj_blocks"),
            (Dtype::U8, vec![e, h, i / 32, 16], blocks),
        );
        as_mxfp4.insert(
            format!("{p}.down_proj_scales"),
            (Dtype::U8, vec![e, h, i / 32], scales),
        );
    }
    let bf16_dir = model_dir("tiny-a-bf16", &as_bf16, |_| {});
    let mxfp4_dir = model_dir("tiny-a-bf16", &as_mxfp4, |c| {
        c["quantization_config"] = serde_json::json!({"quant_method": "mxfp4"});
    });
    let a = logits(bf16_dir.path(), &IDS);
    let b = logits(mxfp4_dir.path(), &IDS);
    let diff = (&a - &b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff");
    assert_eq!(diff, 0.0);
    let model = GptOss::load(mxfp4_dir.path(), &Device::Cpu, Precision::Default).expect("loads");
    assert_eq!(model.layout(), ossterm::model::Layout::Mxfp4);
}

#[test]
fn sharded_checkpoint_loads_like_one_file() {
    let base = read(&fixture("tiny-a-int4"));
    let dir = model_dir("tiny-a-int4", &Tensors::new(), |_| {});
    std::fs::remove_file(dir.path().join("model.safetensors")).expect("rm");
    let (first, second): (Tensors, Tensors) = base
        .into_iter()
        .partition(|(name, _)| name.contains("layers.0.") || name.contains("layers.1."));
    let mut map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", &first),
        ("model-00002-of-00002.safetensors", &second),
    ] {
        write(&dir.path().join(file), part);
        for name in part.keys() {
            map.insert(name.clone(), file.into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .expect("index");
    let a = logits(dir.path(), &IDS);
    let b = logits(&fixture("tiny-a-int4"), &IDS);
    assert_eq!(
        (&a - &b)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_all())
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff"),
        0.0
    );

    // An index that points a tensor at the wrong shard names both.
    map.insert(
        "lm_head.weight".into(),
        "model-00001-of-00002.safetensors".into(),
    );
    let index = serde_json::json!({"weight_map": map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .expect("index");
    let err = load_err(dir.path());
    assert!(
        err.contains("model-00001-of-00002.safetensors") && err.contains("lm_head.weight"),
        "{err}"
    );
}

#[test]
fn unknown_quantization_is_refused_naming_the_method() {
    let dir = model_dir("tiny-a-int4", &read(&fixture("tiny-a-int4")), |c| {
        c["quantization_config"]["quant_method"] = "awq".into();
    });
    let err = load_err(dir.path());
    assert!(err.contains("config.json"), "{err}");
    assert!(err.contains("quant_method is 'awq'"), "{err}");

    let dir = model_dir("tiny-a-int4", &read(&fixture("tiny-a-int4")), |c| {
        c["quantization_config"]["packing_format"] = "auto_round:auto_awq".into();
    });
    let err = load_err(dir.path());
    assert!(err.contains("auto_round:auto_awq"), "{err}");
}

#[test]
fn a_missing_tensor_is_named() {
    let mut tensors = read(&fixture("tiny-a-bf16"));
    tensors.remove("model.layers.2.self_attn.sinks");
    let dir = model_dir("tiny-a-bf16", &tensors, |_| {});
    let err = load_err(dir.path());
    assert!(
        err.contains("'model.layers.2.self_attn.sinks' is missing"),
        "{err}"
    );
    assert!(err.contains("[4] vector"), "{err}");

    let mut tensors = read(&fixture("tiny-a-int4"));
    tensors.remove("model.layers.3.mlp.experts.5.up_proj.scales");
    let dir = model_dir("tiny-a-int4", &tensors, |_| {});
    let err = load_err(dir.path());
    assert!(
        err.contains("model.layers.3.mlp.experts.5.up_proj.scales"),
        "{err}"
    );

    let mut tensors = read(&fixture("tiny-a-bf16"));
    tensors.retain(|name, _| !name.contains("mlp.experts"));
    let dir = model_dir("tiny-a-bf16", &tensors, |_| {});
    let err = load_err(dir.path());
    assert!(err.contains("expert weights in a known layout"), "{err}");
}

#[test]
fn a_mis_shaped_or_mis_typed_tensor_is_named_with_the_expectation() {
    let mut tensors = read(&fixture("tiny-a-bf16"));
    tensors.insert(
        "model.layers.1.self_attn.sinks".into(),
        (Dtype::BF16, vec![3], vec![0; 6]),
    );
    let dir = model_dir("tiny-a-bf16", &tensors, |_| {});
    let err = load_err(dir.path());
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(
        err.contains("'model.layers.1.self_attn.sinks' has shape [3], expected [4]"),
        "{err}"
    );

    let mut tensors = read(&fixture("tiny-a-int4"));
    let (_, shape, data) = tensors["model.layers.0.mlp.experts.0.gate_proj.scales"].clone();
    tensors.insert(
        "model.layers.0.mlp.experts.0.gate_proj.scales".into(),
        (Dtype::BF16, shape, data),
    );
    let dir = model_dir("tiny-a-int4", &tensors, |_| {});
    let err = load_err(dir.path());
    assert!(err.contains("has dtype BF16, expected F16"), "{err}");
}

#[test]
fn asymmetric_int4_is_refused_naming_the_zeros() {
    let mut tensors = read(&fixture("tiny-a-int4"));
    let name = "model.layers.1.mlp.experts.2.down_proj.qzeros";
    tensors.get_mut(name).expect("qzeros").2[0] = 0x75;
    let dir = model_dir("tiny-a-int4", &tensors, |_| {});
    let err = load_err(dir.path());
    assert!(err.contains(name) && err.contains("symmetric"), "{err}");
}

#[test]
fn a_truncated_file_is_named() {
    let dir = model_dir("tiny-a-bf16", &read(&fixture("tiny-a-bf16")), |_| {});
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = load_err(dir.path());
    assert!(
        err.contains("model.safetensors") && err.contains("truncated"),
        "{err}"
    );

    std::fs::write(&path, b"\x05\x00").expect("tiny file");
    let err = load_err(dir.path());
    assert!(err.contains("truncated"), "{err}");

    std::fs::remove_file(&path).expect("rm");
    let err = load_err(dir.path());
    assert!(err.contains("no .safetensors files"), "{err}");
}

/// Splits the int4 fixture into two shard files (layers 0-1 and the rest) in a temp folder,
/// without an index.
fn two_shards() -> (tempfile::TempDir, Tensors, Tensors) {
    let dir = model_dir("tiny-a-int4", &Tensors::new(), |_| {});
    std::fs::remove_file(dir.path().join("model.safetensors")).expect("rm");
    let (first, second): (Tensors, Tensors) = read(&fixture("tiny-a-int4"))
        .into_iter()
        .partition(|(name, _)| name.contains("layers.0.") || name.contains("layers.1."));
    (dir, first, second)
}

#[test]
fn a_tensor_in_two_shards_without_an_index_names_both_files() {
    let (dir, mut first, second) = two_shards();
    first.insert("lm_head.weight".into(), second["lm_head.weight"].clone());
    write(&dir.path().join("a.safetensors"), &first);
    write(&dir.path().join("b.safetensors"), &second);
    let err = load_err(dir.path());
    for part in [
        "'lm_head.weight' is in both",
        "a.safetensors",
        "b.safetensors",
        "model.safetensors.index.json",
    ] {
        assert!(err.contains(part), "{err} lacks {part}");
    }
}

/// Writes an index placing every tensor of `first` in `first_file`, the rest in `b.safetensors`.
fn write_index(dir: &Path, first: &Tensors, second: &Tensors, first_file: &str) {
    let mut map = serde_json::Map::new();
    for name in first.keys() {
        map.insert(name.clone(), first_file.into());
    }
    for name in second.keys() {
        map.insert(name.clone(), "b.safetensors".into());
    }
    let index = serde_json::json!({"weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).expect("index");
}

#[test]
fn index_entries_outside_the_model_folder_are_refused() {
    let (dir, first, second) = two_shards();
    let outside = tempfile::tempdir().expect("temp dir");
    let outside_file = outside.path().join("a.safetensors");
    write(&outside_file, &first);
    write(&dir.path().join("b.safetensors"), &second);
    let absolute = outside_file.to_str().expect("utf8").to_string();
    let relative = format!(
        "../{}/a.safetensors",
        outside
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
    );
    // Both would load were they followed: the shard is fine, only its place is not.
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    for entry in [absolute.as_str(), relative.as_str()] {
        write_index(dir.path(), &first, &second, entry);
        let err = load_err(dir.path());
        for part in [
            "model.safetensors.index.json",
            &format!("'{entry}'"),
            "absolute paths and '..' are refused",
        ] {
            assert!(err.contains(part), "{err} lacks {part}");
        }
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&outside_file, dir.path().join("a.safetensors"))
            .expect("symlink");
        write_index(dir.path(), &first, &second, "a.safetensors");
        let err = load_err(dir.path());
        assert!(
            err.contains("'a.safetensors'") && err.contains("outside the model folder"),
            "{err}"
        );
    }
}

#[test]
fn a_config_with_fewer_layers_than_the_files_is_refused() {
    let dir = model_dir("tiny-a-int4", &read(&fixture("tiny-a-int4")), |c| {
        c["num_hidden_layers"] = 3.into();
        c["layer_types"]
            .as_array_mut()
            .expect("layer_types")
            .truncate(3);
    });
    let err = load_err(dir.path());
    for part in [
        "config.json",
        "num_hidden_layers is 3",
        "model.safetensors",
        "'model.layers.3.input_layernorm.weight' of layer 3",
    ] {
        assert!(err.contains(part), "{err} lacks {part}");
    }
}

/// Loads `dir` on another thread: a file that blocks the open fails the test instead of
/// hanging it.
fn load_err_within_a_minute(dir: &Path) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = dir.to_path_buf();
    std::thread::spawn(move || {
        let result = GptOss::load(&path, &Device::Cpu, Precision::Default).map(|_| ());
        let _ = tx.send(result);
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(Ok(())) => panic!("{} should not load", dir.display()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("loading {} blocked", dir.display()),
    }
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[cfg(unix)]
#[test]
fn a_fifo_device_or_directory_where_a_file_belongs_is_named() {
    let tensors = read(&fixture("tiny-a-int4"));
    let cases: [(&str, &str, &str); 5] = [
        ("config.json", "fifo", "a FIFO (named pipe)"),
        ("config.json", "dir", "a directory"),
        ("model.safetensors", "fifo", "a FIFO (named pipe)"),
        ("model.safetensors", "device", "a device"),
        ("model.safetensors.index.json", "dir", "a directory"),
    ];
    for (file, kind, words) in cases {
        let dir = model_dir("tiny-a-int4", &tensors, |_| {});
        let path = dir.path().join(file);
        let _ = std::fs::remove_file(&path);
        match kind {
            "fifo" => mkfifo(&path),
            "dir" => std::fs::create_dir(&path).expect("mkdir"),
            _ => std::os::unix::fs::symlink("/dev/zero", &path).expect("symlink"),
        }
        let err = load_err_within_a_minute(dir.path());
        assert!(
            err.contains(&path.display().to_string())
                && err.contains(&format!("is {words}, not a regular file")),
            "{file} as {kind}: {err}"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_fifo_tokenizer_is_named_not_waited_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tokenizer.json");
    mkfifo(&path);
    let (tx, rx) = std::sync::mpsc::channel();
    let fifo = path.clone();
    std::thread::spawn(move || {
        let _ = tx.send(ossterm::harmony::Tokenizer::from_file(&fifo).map(|_| ()));
    });
    let err = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(result) => result.expect_err("a FIFO is no tokenizer").to_string(),
        Err(_) => panic!("loading the tokenizer blocked"),
    };
    assert!(
        err.contains(&path.display().to_string()) && err.contains("is a FIFO (named pipe)"),
        "{err}"
    );
}

#[test]
fn generation_config_eos_ids_join_the_configs() {
    let dir = model_dir("tiny-a-int4", &read(&fixture("tiny-a-int4")), |_| {});
    let generation = dir.path().join("generation_config.json");
    for (eos, want) in [
        (serde_json::json!(3), vec![526, 3]),
        (serde_json::json!([526, 5, 3]), vec![526, 5, 3]),
    ] {
        std::fs::write(
            &generation,
            serde_json::json!({"eos_token_id": eos}).to_string(),
        )
        .expect("write");
        let model = GptOss::load(dir.path(), &Device::Cpu, Precision::Default).expect("loads");
        assert_eq!(model.config().eos_token_ids, want);
    }
    std::fs::write(&generation, r#"{"eos_token_id": "</s>"}"#).expect("write");
    let err = load_err(dir.path());
    assert!(
        err.contains("generation_config.json") && err.contains("eos_token_id is \"</s>\""),
        "{err}"
    );
}
