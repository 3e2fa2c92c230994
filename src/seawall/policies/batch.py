"""Batches of inference requests: which calls may share one, merging them, splitting the answer.

Two requests may share a batch when they agree on everything but their rows: the same model and
version, the same input names in the same order with the same datatypes and the same dimensions
after the first, the same requested outputs and the same parameters. `batch_plan` turns that into
a hashable key (built from a few small tuples, no look at the data) and counts the rows: the
first dimension, which every input must share.

A request that cannot be batched has no plan and runs alone: no inputs or no rows, an input of
rank 0, inputs with different row counts, parameters that are not plain values (a list, an
object), or BYTES inputs other than simple ones (one string, or a fixed number of strings, per
row: rank 1 or 2).

`merge` concatenates the inputs along the first axis (numpy; one copy); `split` slices each
output back into views by rows, and refuses an answer whose row count is not the batch's.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from itertools import accumulate

import numpy as np

from seawall.errors import BadResponseError
from seawall.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestedOutput,
    Tensor,
)

__all__ = ["BatchKey", "batch_plan", "merge", "split"]

#: Equal for requests that may share a batch.
BatchKey = tuple[Hashable, ...]

#: BYTES inputs of higher rank are not batched (a ragged or nested layout is not "simple").
_MAX_BYTES_RANK = 2


def batch_plan(request: InferenceRequest) -> tuple[BatchKey, int] | None:
    """The request's batch key and its rows, or None if it must run alone."""
    if not request.inputs:
        return None
    rows = -1
    parts: list[Hashable] = [request.model, request.version]
    for tensor in request.inputs:
        shape = tensor.data.shape
        if not shape or (tensor.datatype is Datatype.BYTES and len(shape) > _MAX_BYTES_RANK):
            return None
        if rows == -1:
            rows = shape[0]
        elif shape[0] != rows:
            return None
        parts.append((tensor.name, tensor.datatype, shape[1:], _frozen(tensor.parameters)))
    if rows == 0:
        return None  # nothing to share; the backend answers an empty request itself
    parts.append(_outputs(request.outputs))
    parts.append(_frozen(request.parameters))
    key = tuple(parts)
    try:
        hash(key)
    except TypeError:  # a parameter holds a list or an object
        return None
    return key, rows


def _frozen(parameters: Parameters) -> Hashable:
    if not parameters:
        return ()
    # The type too: True == 1 == 1.0 as keys, yet a model may read them differently.
    return tuple((k, type(v).__name__, v) for k, v in sorted(parameters.items()))


def _outputs(outputs: list[RequestedOutput] | None) -> Hashable:
    if outputs is None:
        return None
    return tuple((o.name, _frozen(o.parameters)) for o in outputs)


def merge(requests: Sequence[InferenceRequest]) -> InferenceRequest:
    """One request whose inputs are those of `requests` (same batch key) stacked by rows."""
    first = requests[0]
    inputs = []
    for i, tensor in enumerate(first.inputs):
        data = np.concatenate([r.inputs[i].data for r in requests])
        inputs.append(
            Tensor(tensor.name, tensor.datatype, data.shape, data, dict(tensor.parameters))
        )
    outputs = (
        None
        if first.outputs is None
        else [RequestedOutput(o.name, dict(o.parameters)) for o in first.outputs]
    )
    return InferenceRequest(
        model=first.model,
        inputs=inputs,
        version=first.version,
        parameters=dict(first.parameters),
        outputs=outputs,
    )


def split(
    response: InferenceResponse,
    requests: Sequence[InferenceRequest],
    rows: Sequence[int],
    who: str,
) -> list[InferenceResponse]:
    """`response` to the merged `requests` (`rows` each) cut into one response per request.

    Each keeps its request's id and model; outputs are views of the batch's arrays. An output
    without the batch's row count is a `BadResponseError` (`who` names the model).
    """
    total = sum(rows)
    for output in response.outputs:
        got = output.data.shape[0] if output.data.ndim else None
        if got != total:
            found = "a scalar" if got is None else f"{got} rows"
            raise BadResponseError(
                f"{who}: output {output.name!r} has {found} for a batch of {total} rows "
                f"({len(rows)} requests)"
            )
    bounds = list(accumulate(rows, initial=0))
    return [
        InferenceResponse(
            model=request.model,
            outputs=[_rows(output, start, end) for output in response.outputs],
            version=response.version,
            id=request.id,
            parameters=dict(response.parameters),
        )
        for request, start, end in zip(requests, bounds[:-1], bounds[1:], strict=True)
    ]


def _rows(output: Tensor, start: int, end: int) -> Tensor:
    data = output.data[start:end]
    return Tensor(output.name, output.datatype, data.shape, data, dict(output.parameters))
