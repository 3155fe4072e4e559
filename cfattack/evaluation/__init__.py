"""Measuring explanations across many images: the same images explained by several classifiers
(`compare`)."""
