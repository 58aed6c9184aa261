"""The README's library example, run at a small size so that it cannot rot.

README.md marks the example with a line ``<!-- tested: tests/test_readme_example.py ... -->``
right before its ```python block. The test takes that block, shrinks its sizes by text
substitution (every substitution must match, so an edit of the README that the shrinking no
longer fits fails here instead of silently running the full size), runs it on the zoo's MNIST
model and the data folder the block names, and checks what the issue that added it was about:
with pretrained weights (which require grad), the defence once chained an autograd graph through
every transition, so the draws required grad and memory grew with the number of transitions.

Memory growth is checked without measuring memory, which would be noisy: every tensor that
autograd saves for a backward pass while the example runs is recorded (a ``saved_tensors_hooks``
pack hook keeps a weak reference to it). A graph retained by anything the example still holds
keeps its saved tensors alive; a graph that is dropped frees them. So after the run, with the
example's variables still alive, the saved tensors that are still alive, other than the model's
own weights, are the retained graphs: there must be none, at T and at 4T transitions alike.
Before the fix this count grew with T (each transition's graph hung on the previous one's).
"""

from __future__ import annotations

import gc
import re
import weakref
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
MARKER = "<!-- tested: tests/test_readme_example.py"

REFERENCES, RESTARTS, LEAPFROG_STEPS = 3, 2, 5


def readme_example() -> str:
    """The ```python block right after the marker line."""
    text = README.read_text(encoding="utf-8")
    at = text.find(MARKER)
    assert at >= 0, f"README.md lost its marker line {MARKER!r} before the library example"
    block = re.match(r"[^\n]*\n\s*```python\n(.*?)\n```", text[at:], re.DOTALL)
    assert block, "README.md: no ```python block right after the marker line of the library example"
    return block.group(1)


def substitute(code: str, pattern: str, replacement, what: str) -> str:
    """Replace every match of ``pattern`` (a regex); at least one must match."""
    code, count = re.subn(pattern, replacement, code)
    assert count >= 1, f"the README example no longer matches {pattern!r} ({what}): update this test"
    return code


def shrunk(code: str, *, transitions: int) -> str:
    """The example with a few references and restarts, ``transitions`` warm-up and kept
    transitions each, and shorter trajectories."""
    references = re.search(r"torch\.arange\((\d+)\)", code)
    restarts = re.search(r"restarts=(\d+)", code)
    assert references and restarts, "the README example no longer names its references/restarts"
    code = substitute(code, r"torch\.arange\(\d+\)", f"torch.arange({REFERENCES})", "references")
    code = substitute(code, r"restarts=\d+", f"restarts={RESTARTS}", "restarts")
    # the clean reconstructions are repeated once per restart to line up with the attacks
    code = substitute(code, rf"repeat_interleave\({restarts.group(1)}\b", f"repeat_interleave({RESTARTS}",
                      "references repeated per restart")
    code = substitute(code, r"num_warmup=\d+", f"num_warmup={transitions}", "warm-up")
    code = substitute(code, r"num_samples=\d+", f"num_samples={transitions}", "kept draws")
    code = substitute(code, r"num_leapfrog_steps=\d+", f"num_leapfrog_steps={LEAPFROG_STEPS}", "leapfrog steps")
    # the comment's shape follows the sizes; harmless if it is gone
    return code


def data_root(code: str) -> Path:
    found = re.search(r"load_dataset\(\s*\"mnist\"\s*,\s*\"([^\"]+)\"", code)
    assert found, "the README example no longer loads MNIST from a data folder it names"
    return (REPO_ROOT / found.group(1)).resolve()


def run_example(code: str, monkeypatch) -> tuple[dict, list, int]:
    """Run the code from the repository root; returns its variables, what it printed and how
    many tensors autograd saved during the run are still alive (the model's weights apart)."""
    monkeypatch.chdir(REPO_ROOT)
    printed, saved = [], []

    def pack(tensor):
        saved.append(weakref.ref(tensor))
        return tensor

    namespace = {"__name__": "readme_example", "print": lambda *args, **kwargs: printed.append(args)}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        exec(compile(code, str(README), "exec"), namespace)
    gc.collect()
    weights = {p.untyped_storage().data_ptr() for p in namespace["vae"].parameters()}
    alive = {id(t): t for ref in saved if (t := ref()) is not None}
    retained = [t for t in alive.values() if t.untyped_storage().data_ptr() not in weights]
    return namespace, printed, len(retained)


@pytest.mark.slow
def test_readme_example_runs_and_retains_no_graph(monkeypatch):
    code = readme_example()
    if not (data_root(code) / "mnist").is_dir():
        pytest.skip(f"the README example's data folder {data_root(code)} has no mnist/")
    retained, printed_similarity = {}, {}
    for transitions in (2, 8):  # T and 4T
        namespace, printed, retained[transitions] = run_example(shrunk(code, transitions=transitions),
                                                                monkeypatch)
        samples = namespace["samples"]
        points = REFERENCES * RESTARTS
        assert samples.z.shape[:3] == (2, transitions, points)  # (chains, draws, points)
        assert samples.final_z.shape[:2] == (2, points)
        assert len(printed) == 3, printed  # MS-SSIM, the summary, gradient evaluations per input
        similarity = printed_similarity[transitions] = printed[0][0]
        assert isinstance(similarity, torch.Tensor) and 0.0 < float(similarity.detach()) <= 1.0
        # per input, over its 2 chains: L per transition plus the initial state's evaluation
        assert float(printed[2][0]) == 2 * (2 * transitions * LEAPFROG_STEPS + 1)
        # the defence's draws carry no graph (before the fix they required grad)
        for name, value in (("samples.z", samples.z), ("samples.final_z", samples.final_z)):
            assert not value.requires_grad and value.grad_fn is None, f"{name} requires grad"
    # Memory does not grow with the number of transitions: as many saved tensors outlive the run
    # at 4T as at T (before the fix: 282 at T = 2, 642 at T = 8; after it, 156 both, all from the
    # example's last lines, see below).
    assert retained[8] == retained[2], f"saved tensors alive after the run, by T: {retained}"
    # Nothing the example prints carries a graph either: decoding and MS-SSIM with weights that
    # require grad record one, which the printed tensor then holds (and shows as grad_fn=...).
    for transitions, similarity in printed_similarity.items():
        assert not similarity.requires_grad, (
            "the README example's printed MS-SSIM requires grad (its decode/reconstruct run with "
            "the zoo's weights requiring grad): decode under torch.no_grad() or freeze the model")
    # (A few saved tensors stay alive at any T: inputs such as x_ref that the example's own
    # variables hold, which autograd also saved while the attack ran. The equality above is
    # what a retained chain graph breaks.)
