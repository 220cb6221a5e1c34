"""A checkpoint shaped like BAAI/bge-reranker-large (XLM-RoBERTa large: 24 layers, hidden 1024,
16 heads, FFN 4096, vocabulary 250,002, 514 positions, one-logit classification head) with
seeded random weights, so the large cascade stage's speed and memory can be compared side by
side with PyTorch although the real weights cannot be downloaded here.

    /tmp/peers/bin/python bench/peers/make_random_xlmr_large.py \
        --tokenizer ../shared/fixtures/tiny-xlmr-ce --out /tmp/xlmr-large

The tokenizer is copied from `--tokenizer` (a folder with an XLM-R `tokenizer.json`; the
fixture's small Unigram model carries XLM-R's special ids), so both engines see the same token
ids; the weights (float32, ~2.2 GB) are written as `model.safetensors`. Then:

    /tmp/peers/bin/python bench/peers/cross_encoder.py --model /tmp/xlmr-large ...
    sieve bench rerank --model local/xlmr-large ...   (server: models = [{name, path}])
"""

import argparse
import shutil
from pathlib import Path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    torch.manual_seed(args.seed)
    config = XLMRobertaConfig(
        vocab_size=250002,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        hidden_act="gelu",
        max_position_embeddings=514,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=1,
        architectures=["XLMRobertaForSequenceClassification"],
    )
    model = XLMRobertaForSequenceClassification(config).eval()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    source = Path(args.tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy(source / name, out / name)
    print(out)


if __name__ == "__main__":
    main()
