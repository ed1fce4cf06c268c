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
