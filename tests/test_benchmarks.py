"""benchmarks/gpu.py runs rbft's GPU path end to end; here at a tiny size on the CPU, with no PyAV to import."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu.py"


def test_the_gpu_benchmark_runs_rbfts_path_at_a_tiny_size_without_pyav(tmp_path):
    # a GPU machine may lack PyAV: the benchmark reads no video file, so it must not import it
    code = ("import runpy, sys; sys.modules['av'] = None; "
            f"sys.argv = [{str(SCRIPT)!r}, '--sizes', 'tiny', '--videos', '6', '--batch', '3', '--new-tokens', '8', "
            f"'--steps', '4', '--peak-tflops', '1', '--work', {str(tmp_path)!r}]; "
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    tiny = result["sizes"]["tiny"]
    assert result["peak_bf16_tflops"] == 1 and result["transformers"] and result["card"].startswith("CPU")
    assert abs(tiny["generation"]["new_tokens_per_s"] / tiny["generation"]["videos_per_s"] - 8) < 0.1  # 8 a reply
    assert tiny["scoring"]["videos_per_s"] > 0 and tiny["scoring_speedup"] > 0
    for mode in ("lora", "full"):
        figures = tiny[mode]
        assert figures["steps"] == 4 and figures["samples_per_s"] > 0 and 0 < figures["mfu"] < 1
        assert figures["save_s"] >= 0 and figures["reload_s"] >= 0
    assert tiny["lora"]["overhead"] == round(tiny["lora"]["plain_samples_per_s"] / tiny["lora"]["samples_per_s"], 3)
    assert not list(tmp_path.iterdir())  # the model folders are removed once measured
