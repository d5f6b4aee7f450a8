"""Mappings managed as data: versions of each XSLT mapping, compiled safely, checked before they go live
(sample cases, preview, replay, the personal-data policy), activated and rolled back without a restart."""
