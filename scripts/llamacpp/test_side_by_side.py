"""Tests of side_by_side.py: python3 -m unittest discover -s scripts/llamacpp"""

import contextlib
import io
import json
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import side_by_side  # noqa: E402


def ossterm_row(depth, pp, tg, pp_samples, tg_samples, bound):
    return {
        "depth": depth,
        "pp": pp,
        "tg": tg,
        "pp_samples_tok_s": pp_samples,
        "tg_samples_tok_s": tg_samples,
        "decode_bound_tok_s": bound,
        "decode_bytes_per_token": 3_790_000_000,
        "memory_bandwidth_bytes_s": 24.3e9,
    }


def llama_row(n_prompt, n_gen, n_depth, flash_attn, samples):
    return {"n_prompt": n_prompt, "n_gen": n_gen, "n_depth": n_depth, "flash_attn": flash_attn, "samples_ts": samples}


class SideBySide(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def write(self, name, rows):
        path = Path(self.dir.name) / name
        path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
        return path

    def run_main(self, ossterm, llama):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = side_by_side.main(["--ossterm", str(ossterm), "--llama", str(llama), "--machine", "Machine: test"])
        return code, out.getvalue(), err.getvalue()

    def test_pairs_each_test_with_every_flash_attention_setting(self):
        ossterm = self.write(
            "o.jsonl",
            [
                ossterm_row(0, 512, 128, [12.0, 12.1, 12.6], [2.18, 2.20, 2.25], 6.4),
                ossterm_row(4096, 0, 32, [], [1.98, 2.0, 2.02], 6.0),
            ],
        )
        llama = self.write(
            "l.jsonl",
            [
                llama_row(512, 0, 0, -1, [19.6, 19.9, 19.3]),
                llama_row(0, 128, 0, -1, [4.03, 4.14, 3.83]),
                llama_row(0, 32, 4096, 0, [3.45, 3.45, 3.45]),
                llama_row(0, 32, 4096, 1, [2.44, 2.44, 2.44]),
            ],
        )
        code, out, err = self.run_main(ossterm, llama)
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0], "Machine: test")
        self.assertIn(
            "| prefill, empty context (pp512) | 12.0 / 12.1 / 12.6 (mean 12.2) | 19.6 / 19.9 / 19.3 (mean 19.6) | **0.62x** |  |  |",
            lines,
        )
        # 2.21 / 4.00 = 0.55; of the 6.4 tok/s bound: 35% and 62%.
        self.assertIn(
            "| decode, empty context (tg128) | 2.18 / 2.20 / 2.25 (mean 2.21) | 4.03 / 4.14 / 3.83 (mean 4.00) | **0.55x** | 35% | 62% |",
            lines,
        )
        self.assertIn(
            "| decode, depth 4096 (tg32), llama.cpp FA off | 1.98 / 2.00 / 2.02 (mean 2.00) | 3.45 / 3.45 / 3.45 (mean 3.45) | **0.58x** | 33% | 58% |",
            lines,
        )
        self.assertIn("| decode, depth 4096 (tg32), llama.cpp FA on |", out)
        self.assertIn("6.40 tok/s at depth 0 (24.3 GB/s / 3.79 GB a token)", out)
        self.assertIn("6.00 tok/s at depth 4096 (24.3 GB/s / 3.79 GB a token)", out)

    def test_a_test_llama_cpp_did_not_run_is_named(self):
        ossterm = self.write("o.jsonl", [ossterm_row(4096, 0, 32, [], [2.0], 6.0)])
        llama = self.write("l.jsonl", [llama_row(0, 32, 0, -1, [4.0])])
        code, _, err = self.run_main(ossterm, llama)
        self.assertEqual(code, 1)
        self.assertIn("no llama-bench result for tg32 at depth 4096 (n_prompt 0, n_gen 32, n_depth 4096)", err)
        self.assertIn("o.jsonl:1", err)

    def test_bad_lines_are_named_by_file_line_and_key(self):
        llama = self.write("l.jsonl", [llama_row(0, 32, 0, -1, [4.0])])
        cases = [
            (["{not json\n"], "o.jsonl:1: not JSON"),
            ([ossterm_row(0, 0, 32, [], [2.0, -1.0], 6.0)], "o.jsonl:1: 'tg_samples_tok_s' is [2.0, -1.0], expected positive numbers"),
            ([{"pp": 1}], "o.jsonl:1: no 'depth'"),
            ([], "o.jsonl: no results in it"),
        ]
        for rows, message in cases:
            with self.subTest(message=message):
                code, _, err = self.run_main(self.write("o.jsonl", rows), llama)
                self.assertEqual(code, 1)
                self.assertIn(message, err)
        code, _, err = self.run_main(Path(self.dir.name) / "missing.jsonl", llama)
        self.assertEqual(code, 1)
        self.assertIn("missing.jsonl: cannot read", err)

    def test_a_llama_result_without_a_partner_is_reported_not_dropped_silently(self):
        ossterm = self.write("o.jsonl", [ossterm_row(0, 0, 4, [], [2.0], 6.0)])
        llama = self.write("l.jsonl", [llama_row(0, 4, 0, -1, [4.0]), llama_row(16, 0, 0, -1, [9.0])])
        code, out, err = self.run_main(ossterm, llama)
        self.assertEqual(code, 0, err)
        self.assertIn("l.jsonl:2: no ossterm result to compare it with; left out", err)
        self.assertNotIn("pp16", out)


if __name__ == "__main__":
    unittest.main()
