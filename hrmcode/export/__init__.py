"""Handing hrmcode's artifacts to other tools in their own formats (see docs/architecture.md).

``huggingface.export_model``: a model artifact or checkpoint as a directory Hugging Face
``transformers`` loads (``hrmcode export model``).
"""
