"""Tests of write_gguf.py (skipped without numpy and llama.cpp's gguf-py on PYTHONPATH):
PYTHONPATH=/work/llamacpp/llama.cpp/gguf-py python3 -m unittest discover -s scripts/llamacpp"""

import importlib.util
import sys
import tempfile
import unittest
from pathlib import Path

HAVE_GGUF = importlib.util.find_spec("numpy") is not None and importlib.util.find_spec("gguf") is not None

if HAVE_GGUF:
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import write_gguf as w  # noqa: E402


@unittest.skipUnless(HAVE_GGUF, "needs numpy and llama.cpp's gguf-py")
class WriteGguf(unittest.TestCase):
    def test_random_f16_is_finite_and_within_its_amplitude(self):
        rng = np.random.default_rng(0)
        for amplitude in (1.0, 0.0323, 3e-4):
            values = w.f16_binade_bits(rng, 100_000, amplitude).view(np.float16).astype(np.float32)
            self.assertTrue(np.isfinite(values).all())
            self.assertLess(np.abs(values).max(), amplitude)
            self.assertGreaterEqual(np.abs(values).min(), amplitude / 4)
            self.assertTrue((values > 0).any() and (values < 0).any())
        with self.assertRaisesRegex(ValueError, "outside f16's normal range"):
            w.f16_binade_bits(rng, 1, 1e6)

    def test_q4_0_blocks_decode_to_finite_weights_within_the_amplitude(self):
        rng = np.random.default_rng(0)
        data = w.q4_0_blocks(rng, (2, 3, 64), 0.05)
        self.assertEqual(data.shape, (2, 3, 2 * 18))
        weights = w.gguf.quants.dequantize(data, w.Q4_0)
        self.assertEqual(weights.shape, (2, 3, 64))
        self.assertTrue(np.isfinite(weights).all())
        self.assertLessEqual(np.abs(weights).max(), 0.05)
        # Random nibbles: the weights vary within each block.
        self.assertGreater(len(np.unique(weights[0, 0, :32])), 4)
        with self.assertRaisesRegex(ValueError, "multiple of 32 elements, got 40"):
            w.q4_0_blocks(rng, (1, 40), 0.05)

    def test_q8_0_blocks_decode_to_finite_weights_within_the_amplitude(self):
        rng = np.random.default_rng(0)
        data = w.q8_0_blocks(rng, (3, 64), 0.05)
        self.assertEqual(data.shape, (3, 2 * 34))
        weights = w.gguf.quants.dequantize(data, w.Q8_0)
        self.assertEqual(weights.shape, (3, 64))
        self.assertTrue(np.isfinite(weights).all())
        self.assertLessEqual(np.abs(weights).max(), 0.05)
        self.assertGreater(len(np.unique(weights[0, :32])), 16)
        with self.assertRaisesRegex(ValueError, "multiple of 32 elements, got 40"):
            w.q8_0_blocks(rng, (1, 40), 0.05)

    def test_the_q8_0_plan_quantizes_the_projections_and_the_head_only(self):
        f16 = {p.name: p for p in w.plan_tensors(w.Shape(num_hidden_layers=1))}
        q8 = {p.name: p for p in w.plan_tensors(w.Shape(num_hidden_layers=1), "q8_0")}
        changed = {n for n in f16 if f16[n].kind != q8[n].kind}
        self.assertEqual(
            changed,
            {"output.weight"} | {f"blk.0.attn_{p}.weight" for p in ("q", "k", "v", "output")},
        )
        self.assertTrue(all(q8[n].kind == "q8_0" for n in changed))
        self.assertEqual(q8["output.weight"].stored()[2], 201088 * 2880 // 32 * 34)

    def test_the_plan_has_llama_cpp_s_gpt_oss_names_shapes_and_bytes(self):
        plan = {p.name: p for p in w.plan_tensors(w.Shape(num_hidden_layers=1))}
        # src/models/openai-moe.cpp's load_arch_tensors, ne reversed.
        expected = {
            "token_embd.weight": ((201088, 2880), "f16"),
            "output_norm.weight": ((2880,), "f32"),
            "output.weight": ((201088, 2880), "f16"),
            "blk.0.attn_norm.weight": ((2880,), "f32"),
            "blk.0.post_attention_norm.weight": ((2880,), "f32"),
            "blk.0.attn_q.weight": ((4096, 2880), "f16"),
            "blk.0.attn_q.bias": ((4096,), "f32"),
            "blk.0.attn_k.weight": ((512, 2880), "f16"),
            "blk.0.attn_k.bias": ((512,), "f32"),
            "blk.0.attn_v.weight": ((512, 2880), "f16"),
            "blk.0.attn_v.bias": ((512,), "f32"),
            "blk.0.attn_output.weight": ((2880, 4096), "f16"),
            "blk.0.attn_output.bias": ((2880,), "f32"),
            "blk.0.attn_sinks.weight": ((64,), "f32"),
            "blk.0.ffn_gate_inp.weight": ((32, 2880), "f32"),
            "blk.0.ffn_gate_inp.bias": ((32,), "f32"),
            "blk.0.ffn_gate_exps.weight": ((32, 2880, 2880), "q4_0"),
            "blk.0.ffn_gate_exps.bias": ((32, 2880), "f32"),
            "blk.0.ffn_up_exps.weight": ((32, 2880, 2880), "q4_0"),
            "blk.0.ffn_up_exps.bias": ((32, 2880), "f32"),
            "blk.0.ffn_down_exps.weight": ((32, 2880, 2880), "q4_0"),
            "blk.0.ffn_down_exps.bias": ((32, 2880), "f32"),
        }
        self.assertEqual({n: (p.shape, p.kind) for n, p in plan.items()}, expected)
        # What llama-bench reported as model_size for the 24-layer file this writes.
        self.assertEqual(w.planned_bytes(w.plan_tensors(w.Shape())), 14_376_827_136)

    def test_the_vocab_is_the_full_o200k_harmony_padded_to_the_model(self):
        tokens, types, merges = w.load_vocab(w.DEFAULT_TOKENIZER, 201_088)
        self.assertEqual(len(tokens), 201_088)
        self.assertEqual(tokens[199_998], "<|startoftext|>")
        self.assertEqual(types[199_998], int(w.gguf.TokenType.CONTROL))
        self.assertEqual(tokens[200_002], "<|return|>")
        self.assertEqual((tokens[201_000], types[201_000]), ("[PAD201000]", int(w.gguf.TokenType.UNUSED)))
        self.assertEqual(types[0], int(w.gguf.TokenType.NORMAL))
        self.assertEqual(merges[0], "Ġ Ġ")

    def test_bad_tokenizers_and_a_full_disk_are_refused_by_name(self):
        with tempfile.TemporaryDirectory() as tmp:
            bad = Path(tmp) / "tokenizer.json"
            bad.write_text('{"model": {"type": "Unigram", "vocab": {}, "merges": []}}')
            with self.assertRaisesRegex(SystemExit, "tokenizer.json: model.type is 'Unigram', expected 'BPE'"):
                w.load_vocab(bad, 10)
            bad.write_text('{"model": {"type": "BPE", "vocab": {"a": 99}, "merges": []}}')
            with self.assertRaisesRegex(SystemExit, "token 'a' has id 99, outside 0..10"):
                w.load_vocab(bad, 10)
            out = Path(tmp) / "model.gguf"
            with self.assertRaisesRegex(SystemExit, "model.gguf: writing 14.4 GB would leave .* under --min-free-gb"):
                w.write(out, w.Shape(), w.DEFAULT_TOKENIZER, 1, 10**18)
            self.assertFalse(out.exists())


if __name__ == "__main__":
    unittest.main()
