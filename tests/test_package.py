"""The package's shape: an acyclic module-level import graph, nothing imported from results/, short modules, and
the public API of DESIGN.md section 1 working as written there."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import torch

import linmix

SRC = Path(linmix.__file__).resolve().parent
ROOT = SRC.parents[1]
MAX_LINES = 350
#: modules allowed over MAX_LINES (none): split a module that grows past it rather than adding it here
ALLOWED_LONG: set[str] = set()


def module_name(path: Path) -> str:
    parts = ["linmix", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def module_level_statements(body: list[ast.stmt]):
    """Statements that run on import: the module body and class bodies, into if/try/with blocks, but not
    function bodies and not ``if TYPE_CHECKING:`` blocks."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from module_level_statements(node.orelse)
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(node, field, None)
            if isinstance(inner, list):
                yield from module_level_statements([n for n in inner if isinstance(n, ast.AST)])
        if isinstance(node, ast.ExceptHandler):
            yield from module_level_statements(node.body)


def imported_modules(name: str, path: Path) -> set[str]:
    """The linmix modules ``name`` imports at module level (``from linmix.a import b``: linmix.a.b if that
    is a module, else linmix.a)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in module_level_statements(ast.parse(path.read_text()).body):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t in MODULES and t != name)
    return out


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other at module level (strongly connected components of size
    > 1, or a module importing itself), by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph[node]:
                cycles.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return cycles


def test_the_cycle_finder_finds_cycles():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}) == [["a", "b", "c"], ["e"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_module_level_imports_are_acyclic():
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    assert graph["linmix"] >= {"linmix.config", "linmix.mixers", "linmix.models"}  # the parser sees edges
    cycles = import_cycles(graph)
    assert not cycles, "modules that import each other at module level: " + "; ".join(
        " <-> ".join(group) for group in cycles)


IMPORTERS = ("import_module", "run_path", "run_module", "spec_from_file_location", "SourceFileLoader", "exec")


def test_nothing_under_results_is_imported():
    scripts = {p.stem for p in (ROOT / "results").rglob("*.py")} if (ROOT / "results").is_dir() else set()
    offenders = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                targets = [node.module or ""]
            elif isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                if func.endswith(IMPORTERS) or func.endswith(("sys.path.insert", "sys.path.append")):
                    texts = [n.value for a in node.args for n in ast.walk(a)
                             if isinstance(n, ast.Constant) and isinstance(n.value, str)]
                    if any("results" in t for t in texts):
                        offenders.append(f"{name}: {ast.unparse(node)}")
            for target in targets:
                top = target.split(".")[0]
                if top == "results" or ".results" in target or top in scripts:
                    offenders.append(f"{name}: imports {target}")
    assert not offenders, offenders


def test_modules_are_at_most_350_lines():
    lengths = {str(p.relative_to(SRC)): len(p.read_text().splitlines()) for p in MODULES.values()}
    long = {path: n for path, n in lengths.items() if n > MAX_LINES}
    print(f"modules over {MAX_LINES} lines, allowed until split: "
          + (", ".join(f"{p} ({long[p]})" for p in sorted(long.keys() & ALLOWED_LONG)) or "none"))
    done = sorted(ALLOWED_LONG - long.keys())
    if done:
        print(f"now short, remove from ALLOWED_LONG: {', '.join(done)}")
    new = {path: n for path, n in long.items() if path not in ALLOWED_LONG}
    assert not new, f"modules over {MAX_LINES} lines (split them): {new}"


# ------------------------------------------------------------------------------------------- DESIGN.md section 1
#: the lines of DESIGN.md section 1 not run here, and why
NOT_RUN: dict[str, str] = {}
HAVE_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


@pytest.fixture
def ns() -> dict:
    torch.manual_seed(0)
    B, T, name = 2, 12, "summation"
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 8:] = False
    return dict(linmix=linmix, torch=torch, name=name, options={}, x=torch.randn(B, T, 256), mask=mask,
                x_t=torch.randn(B, 256), batch_size=B, vocab_size=50, num_classes=3,
                ids=torch.randint(0, 50, (B, T)), numeric=torch.randn(B, 4))


DESIGN_LINES = [
    ("mixers", """
linmix.MIXERS
assert set(linmix.MIXERS) >= {"attention", "local_attention", "summation", "aggregation", "spectral",
                              "topological", "linear_attention", "fnet"}
for name in linmix.MIXERS:
    m = linmix.build_mixer(name, d_model=256, max_len=1024, causal=name != "fnet", **options)
    assert isinstance(m, torch.nn.Module)
    y = m(x)
    assert y.shape == x.shape
    y = m(x, padding_mask=mask)
    assert y.shape == x.shape
    assert m.causal is (name != "fnet")
"""),
    ("streaming", """
m = linmix.build_mixer(name, d_model=256, max_len=1024, causal=True, **options)
state = m.init_state(batch_size)
y_t, state = m.step(x_t, state)
assert y_t.shape == x_t.shape
torch.testing.assert_close(y_t, m(x_t[:, None])[:, 0])
fnet = linmix.build_mixer("fnet", d_model=256, max_len=1024, causal=False)
try:
    fnet.init_state(batch_size)
    raise AssertionError("a bidirectional mixer streamed")
except NotImplementedError:
    pass
"""),
    ("lm", """
lm = linmix.LanguageModel(vocab_size, d_model=256, layers="summation*3,attention", max_len=1024, n_heads=4)
logits = lm(ids)
assert logits.shape == (*ids.shape, vocab_size)
ids_out = lm.generate(ids, max_new_tokens=100, temperature=1.0, top_k=None)
assert ids_out.shape == (ids.shape[0], ids.shape[1] + 100) and torch.equal(ids_out[:, :ids.shape[1]], ids)
"""),
    ("classifier", """
clf = linmix.Classifier(vocab_size, num_classes, d_model=256, layers="summation", max_len=512)
logits = clf(ids, padding_mask=mask)
assert logits.shape == (ids.shape[0], num_classes)
"""),
    ("regressor", """
reg = linmix.MultimodalRegressor(vocab_size, n_numeric=4, d_model=256, layers="summation", fusion="add")
pred = reg(ids, numeric, padding_mask=mask)
assert pred.shape == (ids.shape[0],)
"""),
    ("save_load", """
for model in (linmix.LanguageModel(vocab_size, d_model=32, layers="summation", max_len=64),
              linmix.Classifier(vocab_size, num_classes, d_model=32, max_len=64)):
    path = tmp / type(model).__name__
    model.save_pretrained(path); loaded = type(model).from_pretrained(path)
    torch.testing.assert_close(loaded.eval()(ids), model.eval()(ids))
"""),
    ("inline_options", """
lm = linmix.LanguageModel(vocab_size, layers="summation*3,local_attention(window=64)", positional="none")
assert lm.encoder.layers[3].mixer.window == 64
assert lm(ids).shape == (*ids.shape, vocab_size)
"""),
    ("spectral_kernel", """
m = linmix.build_mixer("spectral", d_model=256, max_len=256, causal=True, kernel="implicit")
assert m(torch.randn(1, 300, 256)).shape == (1, 300, 256)  # any T at run time
"""),
    ("convert", """
model = linmix.LanguageModel(vocab_size, d_model=32, layers="attention*3", max_len=64)
model, report = linmix.convert(model, mixer="summation", keep=[-1])
assert model.encoder.layer_names[-1] == "attention"
"""),
    pytest.param("hf", """
lm = linmix.LanguageModel(vocab_size, d_model=32, layers="summation,attention", max_len=64)
path_written_by_linmix_save_pretrained = lm.save_pretrained(tmp / "lm")
import transformers
import linmix.hf
hf_lm = transformers.AutoModelForCausalLM.from_pretrained(path_written_by_linmix_save_pretrained)
torch.testing.assert_close(hf_lm(ids).logits, lm.eval()(ids))
""", marks=pytest.mark.skipif(not HAVE_TRANSFORMERS, reason="transformers is not installed (pip install linmix[hf])")),
]


@pytest.mark.parametrize("label, code", DESIGN_LINES, ids=lambda v: v if "\n" not in v else "")
def test_design_section_1_api_works_as_written(label, code, ns, tmp_path):
    exec(compile(code, f"<DESIGN.md section 1: {label}>", "exec"), {**ns, "tmp": tmp_path})


def test_design_lines_not_run_are_listed():
    print("DESIGN.md section 1 lines not run:", NOT_RUN or "none")
    labels = {getattr(p, "values", p)[0] for p in DESIGN_LINES}
    assert {"convert", "hf"} <= labels and NOT_RUN == {}
