"""The OCR cascade example: PP-OCR detection, angle classification and recognition."""
