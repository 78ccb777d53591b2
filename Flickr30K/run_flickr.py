#!/usr/bin/env python
"""Fine-tune VisualBERT on Flickr30K Entities region-to-phrase grounding (configs/flickr/fine-tune.json: KL
divergence of the log-softmax over the proposals to the targets, best/ by R@1 on val).

    python Flickr30K/run_flickr.py --data_dir data/flickr30k/Flickr30kEntities --features data/flickr30k \
        --model_name_or_path runs/flickr_pre/best --output_dir runs/flickr30k

Task pre-training (configs/flickr/pre-train.json, masked LM on the captions) runs through the pre-training
script, as the VQA2 and NLVR2 ones: ``python run_pretrain.py --dataset flickr30k --data_dir ... --features ...``.
"""

from visualbert.build import build_collator, build_dataset, build_model
from visualbert.cli import main_wrapper, training_parser
from visualbert.config import TrainConfig
from visualbert.distributed import setup_process
from visualbert.engine import fit
from visualbert.tasks import Flickr30K
from visualbert.tokenizer import load_tokenizer


def main(argv=None, callbacks=()):
    parser = training_parser(__doc__, learning_rate=2e-5, batch_size=32, num_train_epochs=5)
    Flickr30K.add_data_args(parser, train=True)
    args = parser.parse_args(argv)
    config = TrainConfig.from_args(args, Flickr30K)  # every usage error is raised here
    setup_process(config.seed)
    tokenizer = load_tokenizer(args.vocab_file)
    train_set = build_dataset(Flickr30K, config.train_split, args, tokenizer)
    eval_set = build_dataset(Flickr30K, config.eval_split, args, tokenizer) if config.eval_split else None
    model = build_model(args, Flickr30K, train_set)
    fit(config, model, train_set, eval_set, Flickr30K, build_collator(tokenizer), callbacks=callbacks)
    return 0


if __name__ == "__main__":
    main_wrapper(main)
