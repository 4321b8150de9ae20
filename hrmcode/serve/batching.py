"""Continuous batching: the decode steps of concurrent requests run as one batch.

One decoding thread owns the model. A request joins between two steps: its prompt runs alone
(the single-sequence path, fused kernels included), its first token is picked, and its cache
becomes a row of the batch cache (``hrmcode.model.kvcache.BatchKVCache``). Each step then runs
every row's next position in one forward (the int8 layers' kernel multiplies all rows with one
pass over the weights) and picks each row's token with that request's own sampling settings and
seeded generator. A request leaves between two steps, in any order: at EOS, at ``max_new_tokens``,
at the model's context, or when its consumer stops reading (a stop sequence, a client gone:
``GenerationRun`` closes the token iterator).

Guarantees: a request that decodes alone from start to end runs exactly ``generate()``'s
computation (its own ``KVCache``, the fused single-sequence kernels), so sequential clients get
exactly the library's tokens; a request that shares the batch gets them up to float rounding (int8
models: the batch kernel computes each row as the single-sequence one does; float models run
PyTorch ops where a lone request runs the fused kernels, so greedy tokens can differ where two
logits nearly tie); sampling stays per request and seeded; a prompt whose prefill fails fails its
own request only; at most one prompt is prefilled between two decode steps, so a new request delays
the running ones by one prefill at most, and waits for at most one step before its prefill. Not
guaranteed: fairness beyond first come, first served; a prompt longer than the context is refused
before it gets here (``ModelEngine.check_prompt``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from hrmcode.memory import release_freed
from hrmcode.model.base import model_device
from hrmcode.model.generate import GenerationConfig, SegmentsSeen, pick_token, prefill
from hrmcode.model.kvcache import BatchKVCache, KVCache

_END = object()  # the request has left the batch (its consumer reads no further)


@dataclass
class _Request:
    prompt_ids: list[int]
    cfg: GenerationConfig
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    generator: torch.Generator | None = None
    last: int = 0  # the token fed at the next step
    produced: int = 0
    length: int = 0  # tokens in the context (prompt + produced)
    segments_seen: SegmentsSeen | None = None  # told the segments its prompt chose (its row runs that many)


class BatchDecoder:
    """Decodes every submitted request in one batch of at most ``max_batch`` rows."""

    def __init__(self, model: torch.nn.Module, eos_id: int | None, max_batch: int):
        self.model = model
        self.eos_id = eos_id
        self.max_batch = max_batch
        self.max_len = model.config.max_seq_len
        self.device = model_device(model)
        self._waiting: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._rows: list[_Request] = []
        self._cache = BatchKVCache(max_batch, getattr(model, "kv_dtype", None))
        self._solo: KVCache | None = None  # a request decoding alone keeps its own cache: generate()'s exact path
        self._thread = threading.Thread(target=self._loop, name="hrmcode-batch", daemon=True)
        self._thread.start()

    # -- the consumer side (any thread) --------------------------------------------------------
    def tokens(self, model: torch.nn.Module, prompt_ids: Sequence[int], cfg: GenerationConfig,
               segments_seen: SegmentsSeen | None = None) -> Iterator[int]:
        """A ``GenerationRun`` token source: the request's tokens as the batch produces them."""
        request = _Request(list(prompt_ids), cfg, segments_seen=segments_seen)
        self._waiting.put(request)
        self._wake.set()
        try:
            while True:
                token = request.out.get()
                if token is _END:
                    return
                if isinstance(token, BaseException):
                    raise token
                yield token
        finally:
            request.cancelled.set()  # closed early (stop sequence, client gone) or done: leave the batch
            self._wake.set()

    @property
    def running(self) -> int:
        return len(self._rows)

    # -- the decoding thread -------------------------------------------------------------------
    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            if not self._rows and self._waiting.empty():
                self._wake.wait()
            self._wake.clear()
            try:
                self._drop_cancelled()
                self._admit_one()
                if self._rows:
                    self._step()
            except Exception as exc:  # a bug or out of memory: every running request fails, the loop goes on
                for request in self._rows:
                    request.out.put(exc)
                self._rows.clear()
                self._idle()
            if not self._rows and self._waiting.empty():  # idle: what the requests freed goes back to the
                release_freed()  # system (not by a consumer: it cannot tell whether its row has left yet)

    def _drop_cancelled(self) -> None:
        for index in range(len(self._rows) - 1, -1, -1):
            if self._rows[index].cancelled.is_set():
                self._leave(index)

    def _leave(self, index: int) -> None:
        request = self._rows[index]
        request.out.put(_END)
        if self._solo is not None:
            self._solo = None
            self._rows.pop()
        else:
            moved = self._cache.remove_row(index)
            if moved is not None:
                self._rows[index] = self._rows[moved]
            self._rows.pop()
        if not self._rows:
            self._idle()

    def _idle(self) -> None:
        """The last row has left: an idle server holds no batch buffers (they grow to the longest row's context).
        The dropped cache is freed at once: its layers refer to it weakly (``kvcache.RaggedKV``)."""
        self._cache = BatchKVCache(self.max_batch, getattr(self.model, "kv_dtype", None))
        self._solo = None

    def _admit_one(self) -> None:
        """Prefill the oldest waiting request alone and make it a row (one per step, so running
        rows are delayed by one prefill at most)."""
        if len(self._rows) >= self.max_batch or self._waiting.empty():
            return
        request = self._waiting.get()
        if request.cancelled.is_set():
            return
        cfg = request.cfg
        try:  # this request's own failure (out of memory, a budget its model cannot run) is its alone
            request.generator = torch.Generator().manual_seed(cfg.seed)
            ids = request.prompt_ids
            single = KVCache(min(len(ids) + cfg.max_new_tokens, self.max_len), getattr(self.model, "kv_dtype", None))
            logits, segments = prefill(self.model, ids, cfg, single)  # under the request's compute budget
            if request.segments_seen is not None:
                request.segments_seen(segments)
            first = pick_token(logits, cfg, request.generator)
        except Exception as exc:  # noqa: BLE001 - handed to the request's consumer, which raises it
            request.out.put(exc)
            return
        request.length = len(ids)
        if self._emit(request, first):
            try:
                if not self._rows:
                    self._solo = single
                else:
                    if self._solo is not None:  # the lone request joins the batch it now shares
                        self._cache.add_row(self._solo)
                        self._solo = None
                    self._cache.add_row(single)
            except Exception as exc:  # the batch could not take the row (out of memory growing it): the loop fails
                request.out.put(exc)  # the running rows; this request, not yet one of them, must hear it too
                raise
            self._rows.append(request)
        else:
            request.out.put(_END)

    def _emit(self, request: _Request, token: int) -> bool:
        """Hand ``token`` to the consumer; whether the request goes on (its next step is needed)."""
        request.out.put(token)
        request.produced += 1
        request.length += 1
        request.last = token
        if token == self.eos_id and not request.cfg.ignore_eos:
            return False
        return request.produced < request.cfg.max_new_tokens and request.length < self.max_len

    def _step(self) -> None:
        """One position for every row, in one forward."""
        tokens = torch.tensor([[r.last] for r in self._rows], device=self.device)
        logits = self.model(tokens, cache=self._solo if self._solo is not None else self._cache).logits[:, -1]
        greedy = logits.argmax(dim=-1).tolist()  # every greedy row's pick in one call: pick_token's argmax, row-wise
        finished = [index for index, request in enumerate(self._rows)
                    if not self._emit(request, greedy[index] if request.cfg.temperature <= 0
                                      else pick_token(logits[index], request.cfg, request.generator))]
        for index in reversed(finished):
            self._leave(index)
