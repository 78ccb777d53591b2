"""Constants shared by the data pipeline, the model losses and the metrics.

Kept in one place so that the data side (which never imports the model) and the
losses agree on them.
"""

# Label value ignored by the masked-LM loss. HF uses -100, the original release -1;
# -100 is also paddle.nn.functional.cross_entropy's default ignore_index.
IGNORE_INDEX = -100

# Padding value of ``image_text_alignment`` and ``region_to_phrase_position`` entries.
ALIGNMENT_PAD = -1

# Sentence-image matching label: 1 = the caption describes the image (as the released checkpoints were trained).
SENTENCE_IMAGE_MATCH = 1
SENTENCE_IMAGE_RANDOM = 0
