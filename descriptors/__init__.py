"""Named image descriptors (shape, tone, texture, labelled attributes); they arrive with the explainer issue."""

__all__: list[str] = []
