"""ocr: Tesseract OCR workers (tesserocr); ``[ocr] ocr_workers`` processes, one page each.

Always running, as ``ocr:ocr_00``, ``ocr:ocr_01``, ... (supervisord ``numprocs``); more
workers can join from other machines (``scanbridge worker ocr``, see remote.py). Pages come
as blobs and every request is idempotent, so the broker gives each page to the next idle
worker and re-queues it if that worker dies. Spreading a document over the workers,
progress, cancel and outputs are the gateway's OCR jobs (actors/gateway/recognition.py).

=========  ===========================================  ===================================
op         args                                         result
=========  ===========================================  ===================================
languages                                               {installed, default, tesseract,
                                                         worker}
check      lang?                                        the same and {lang} (``a+b``), or
                                                         invalid_option
page       blobs=[image], lang?, rotate?, hocr?,        {index, lang, rotation,
           index?                                        orientation_confidence, width,
                                                         height, text, words: [{text, conf,
                                                         box, line, block}], seconds,
                                                         worker: {host, pid}, hocr?}
=========  ===========================================  ===================================

``rotation`` is how far the page was turned (clockwise) to read it upright; word boxes are
in that upright image. ``scanbridge worker ocr`` is commands.py; ``scanbridge ocr`` and
``scanbridge barcodes`` are clients of the gateway (``scanbridge/recognition.py``).
"""
