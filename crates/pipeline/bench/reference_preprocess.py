#!/usr/bin/env python3
"""Reference harness: Megatron-LM `tools/preprocess_data.py`'s encode loop (formats.md A.5/Part C)
built from megatron-core's own wheel code, without torch.

PyPI's megatron-core does not ship `tools/preprocess_data.py`, and its `IndexedDatasetBuilder`
module imports torch (a 4.5 GB CUDA install on PyPI) only for type annotations on this path.
This harness therefore:
  * loads megatron-core's unmodified `megatron/core/datasets/indexed_dataset.py` and
    `megatron/core/tokenizers/text/libraries/huggingface_tokenizer.py` from an unpacked wheel,
    with `torch` and two logging/storage helper modules replaced by empty stubs;
  * repeats the script's loop: text-mode open (UTF-8, universal newlines), `json.loads` per line,
    `multiprocessing.Pool(workers).imap(encode, fin, 32)`, `tokenizer.text_to_ids(sentence)`
    with `include_special_tokens=True` (= `tokenizer(text).input_ids`), `--append-eod`,
    `add_document` for every line (empty documents kept), `finalize`;
  * `--mode nemo` instead follows NeMo's `preprocess_data_for_megatron.py` (A.6): ids from
    `convert_tokens_to_ids(tokenize(text))`, empty documents skipped, `--need-pad-id`.

The ids depend on the transformers version (formats.md A.5, "Determinism"): Megatron-LM runs
today's transformers 5, which rebuilds a Llama tokenizer's pre-tokenizer; NeMo and
neuronx-nemo-megatron pin transformers 4, which uses tokenizer.json as written. Compare each mode
with its own stack:
    --mode megatron   in a venv with transformers>=5
    --mode nemo       in a venv with transformers>=4.40,<5

Setup (Python 3.11 works with megatron-core 0.16.1; 3.12 takes 0.19.x):
    python3 -m venv V && V/bin/pip install 'transformers>=5' tokenizers numpy
    python3 -m venv V4 && V4/bin/pip install 'transformers>=4.40,<5' tokenizers numpy
    V/bin/pip download --no-deps megatron-core==0.16.1 -d wheel && (cd wheel && unzip -q -o *.whl)
Run:
    HF_HUB_OFFLINE=1 V/bin/python reference_preprocess.py --megatron-core wheel \\
        --input corpus.jsonl --output-prefix out/ref --tokenizer-model llama2-tokenizer \\
        --json-keys text --append-eod --workers 2 [--mode nemo --need-pad-id]
"""

import argparse
import importlib.util
import json
import multiprocessing
import os
import sys
import time
import types


def load_megatron(root):
    """Imports the two megatron-core modules from an unpacked wheel, with stubs for torch.

    The torch stub exists only while they import (they bind the name at import time), so
    transformers still sees that torch is not installed."""
    # Resolved before the stub exists (transformers 4 imports AutoTokenizer lazily, and would
    # otherwise meet the stub and fail on its missing __spec__).
    from transformers import AutoTokenizer  # noqa: F401
    for name in ["torch", "megatron", "megatron.core", "megatron.core.datasets",
                 "megatron.core.tokenizers", "megatron.core.tokenizers.text",
                 "megatron.core.tokenizers.text.libraries"]:
        module = types.ModuleType(name)
        module.__path__ = []
        sys.modules.setdefault(name, module)
    torch = sys.modules["torch"]
    torch.Tensor = object
    torch.utils = types.SimpleNamespace(data=types.SimpleNamespace(Dataset=object))
    utils = types.ModuleType("megatron.core.utils")
    utils.log_single_rank = lambda logger, level, *args, **kw: logger.log(level, *args, **kw)
    sys.modules["megatron.core.utils"] = utils
    msc = types.ModuleType("megatron.core.msc_utils")

    class MultiStorageClientFeature:
        @staticmethod
        def is_enabled():
            return False
    msc.MultiStorageClientFeature = MultiStorageClientFeature
    sys.modules["megatron.core.msc_utils"] = msc
    storage = types.ModuleType("megatron.core.datasets.object_storage_utils")
    for attr in ["S3Config", "ObjectStorageConfig", "is_object_storage_path",
                 "get_index_cache_path", "dataset_exists", "cache_index_file", "parse_s3_path",
                 "get_object_storage_access", "is_s3_path"]:
        setattr(storage, attr, lambda *a, **k: None)
    sys.modules["megatron.core.datasets.object_storage_utils"] = storage

    def load(name, rel):
        spec = importlib.util.spec_from_file_location(name, os.path.join(root, rel))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    load("megatron.core.tokenizers.text.libraries.abstract_tokenizer",
         "megatron/core/tokenizers/text/libraries/abstract_tokenizer.py")
    indexed = load("megatron.core.datasets.indexed_dataset",
                   "megatron/core/datasets/indexed_dataset.py")
    hf = load("megatron.core.tokenizers.text.libraries.huggingface_tokenizer",
              "megatron/core/tokenizers/text/libraries/huggingface_tokenizer.py")
    del sys.modules["torch"]
    return indexed, hf


class Encoder:
    """The per-worker encoder of preprocess_data.py (document level, no sentence splitting)."""

    def __init__(self, args):
        self.args = args

    def initializer(self):
        _, hf = load_megatron(self.args.megatron_core)
        if self.args.mode == "megatron":
            # use_fast=True: Megatron-LM's tools/preprocess_data.py loads AutoTokenizer with
            # its default (fast); megatron-core's class defaults to slow, which transformers 4
            # can only build from a sentencepiece model (transformers 5 has no slow Llama).
            Encoder.tokenizer = hf.HuggingFaceTokenizer(self.args.tokenizer_model,
                                                        include_special_tokens=True,
                                                        use_fast=True)
            Encoder.eod = Encoder.tokenizer.eod
        else:
            from transformers import AutoTokenizer
            tok = AutoTokenizer.from_pretrained(self.args.tokenizer_model)
            if self.args.need_pad_id and (tok.pad_token_id is None or tok.pad_token_id < 0):
                tok.add_special_tokens({"pad_token": "<pad>"})
            Encoder.tokenizer = tok
            Encoder.eod = tok.eos_token_id

    def ids(self, text):
        if self.args.mode == "megatron":
            return Encoder.tokenizer.text_to_ids(text)
        tok = Encoder.tokenizer
        return tok.convert_tokens_to_ids(tok.tokenize(text))

    def encode(self, json_line):
        data = json.loads(json_line)
        ids, lens = {}, {}
        for key in self.args.json_keys:
            text = data[key]
            sentences = text if (isinstance(text, list) and self.args.mode == "megatron") else [text]
            doc_ids, sentence_lens = [], []
            for sentence in sentences:
                sentence_ids = self.ids(sentence)
                if len(sentence_ids) > 0:
                    doc_ids.extend(sentence_ids)
                    sentence_lens.append(len(sentence_ids))
            if len(doc_ids) > 0 and self.args.append_eod:
                doc_ids.append(Encoder.eod)
                sentence_lens[-1] += 1
            ids[key], lens[key] = doc_ids, sentence_lens
        return ids, lens, len(json_line)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--megatron-core", required=True, help="unpacked megatron-core wheel")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output-prefix", required=True)
    parser.add_argument("--tokenizer-model", required=True)
    parser.add_argument("--json-keys", nargs="+", default=["text"])
    parser.add_argument("--append-eod", action="store_true")
    parser.add_argument("--need-pad-id", action="store_true")
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--mode", choices=["megatron", "nemo"], default="megatron")
    args = parser.parse_args()

    startup = time.time()
    indexed, _ = load_megatron(args.megatron_core)
    encoder = Encoder(args)
    encoder.initializer()
    vocab_size = len(Encoder.tokenizer.tokenizer) if args.mode == "megatron" else len(Encoder.tokenizer)
    dtype = indexed.DType.optimal_dtype(vocab_size)
    builders, paths = {}, {}
    for key in args.json_keys:
        prefix = f"{args.output_prefix}_{key}_document"
        paths[key] = prefix
        builders[key] = indexed.IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)

    start = time.time()
    total_bytes, documents = 0, 0
    with open(args.input, "r", encoding="utf-8") as fin:
        pool = multiprocessing.Pool(args.workers, initializer=encoder.initializer)
        for ids, lens, nbytes in pool.imap(encoder.encode, fin, 32):
            total_bytes += nbytes
            for key in ids:
                if args.mode == "nemo" and len(ids[key]) == 0:
                    continue
                builders[key].add_document(ids[key], lens[key])
            documents += 1
        pool.close()
        pool.join()
    for key in args.json_keys:
        builders[key].finalize(paths[key] + ".idx")
    elapsed = time.time() - start
    print(json.dumps({
        "documents": documents,
        "bytes": os.path.getsize(args.input),
        "startup_s": round(start - startup, 2),
        "elapsed_s": round(elapsed, 2),
        "mb_per_s": round(os.path.getsize(args.input) / 1e6 / elapsed, 2),
        "vocab_size": vocab_size,
        "dtype": str(dtype),
    }))


if __name__ == "__main__":
    main()
