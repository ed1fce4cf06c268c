"""Read-only questions about an ONNX graph that the int8 recipes ask, and the node order ONNX needs.

Which nodes stay float (the logits head), which MatMuls the fallback may keep in float, the
graph's input names, and a topological sort for the rewrites that append nodes.
"""
from __future__ import annotations

from pathlib import Path


def logits_head_nodes(model) -> list[str]:
    """Names of the MatMul/Gemm (and its bias Add) that produce the graph's logits: kept in float.

    The classifier's few outputs carry the decision; quantizing it buys nothing in size or speed.
    """
    producers = {out: n for n in model.graph.node for out in n.output}
    names = []
    for output in model.graph.output:
        node = producers.get(output.name)
        if node is not None and node.op_type == "Add":  # MatMul + bias
            names.append(node.name)
            node = next((producers[i] for i in node.input if i in producers and producers[i].op_type == "MatMul"), None)
        if node is not None and node.op_type in ("MatMul", "Gemm"):
            names.append(node.name)
    return [n for n in names if n]


def quantizable_matmuls(fp32_path: Path, head: list[str]) -> list[str]:
    """MatMuls with a constant weight, the logits head excepted: what the float fallback may pick."""
    import onnx

    model = onnx.load(str(fp32_path), load_external_data=False)
    weights = {init.name for init in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights and n.name not in head]


def inline_weight_identities(path: Path) -> int:
    """Make every MatMul that reads a shared parameter read the initializer itself; rewrites `path`.

    torch's ONNX exporter writes a parameter used by several layers (ALBERT shares one layer's
    weights across all layers) as an initializer for the first use and `Identity(initializer)` for
    the others. Behind an Identity the weight is not a constant to onnxruntime's quantize_dynamic
    and transformer optimizer, so those MatMuls would silently stay float. One initializer read by
    several nodes is plain ONNX, which both tools handle.

    Returns:
        How many Identity nodes were removed.
    """
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias = {n.output[0]: n.input[0] for n in graph.node
             if n.op_type == "Identity" and n.input[0] in weights and n.output[0] not in outputs}
    if not alias:
        return 0
    kept = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for node in kept:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    del graph.node[:]
    graph.node.extend(kept)
    onnx.save(model, str(path))
    return len(alias)


def weight_matmuls(model) -> list[str]:
    """Every MatMul or Gemm with a constant weight, by name (Gemm as the `<name>_MatMul` quantize_dynamic makes of it)."""
    weights = {init.name for init in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights:
            names.append(node.name)
        elif node.op_type == "Gemm" and node.input[1] in weights:
            names.append(node.name + "_MatMul")
    return names


def audit_matmuls(fp32_model, int8_model, float_reasons: dict[str, str]) -> dict:
    """What became of each constant-weight MatMul of the fp32 graph in the int8 graph.

    Per token: a MatMulIntegerToFloat whose activation scale is the rewrite's scalar 1.0 (the
    per-token scales follow in a Mul). Per tensor: onnxruntime's MatMulInteger or a
    MatMulIntegerToFloat with a run-time scale. Float: the MatMul is still there, with the
    reason from `float_reasons` (or "no reason recorded", which `quantize_int8` refuses).

    Returns:
        {"per_token": [names], "per_tensor": [names], "float": {name: reason}, "unaccounted": [names]}
    """
    from toolkit.export.int8.rewrite import PER_TOKEN_ONE

    nodes = {n.name: n for n in int8_model.graph.node}
    result = {"per_token": [], "per_tensor": [], "float": {}, "unaccounted": []}
    for name in weight_matmuls(fp32_model):
        fp32_name = name[: -len("_MatMul")] if name.endswith("_MatMul") else name  # a Gemm's own name
        rewritten = nodes.get(f"{name}_quant_output_scale_mul/by_weight")
        if rewritten is not None and rewritten.input[2] == PER_TOKEN_ONE:
            result["per_token"].append(name)
        elif rewritten is not None or f"{name}_quant" in nodes:
            result["per_tensor"].append(name)
        elif name in nodes or fp32_name in nodes:
            result["float"][name] = float_reasons.get(name, float_reasons.get(fp32_name, "no reason recorded"))
        else:
            result["unaccounted"].append(name)
    return result


def graph_inputs(path: Path) -> list[str]:
    """The input names an ONNX file declares, in order."""
    import onnx

    return [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]


def topological(nodes: list, graph) -> list:
    """Nodes in an order where each input is produced before use (ONNX requires it)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    ordered, pending = [], nodes
    while pending:
        waiting = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ValueError(f"int8 rewrite left {len(waiting)} nodes with missing inputs, e.g. {waiting[0].name}")
        pending = waiting
    return ordered
