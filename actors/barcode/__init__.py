"""barcode: barcodes and QR codes on a session's pages (zxing-cpp, or pyzbar as the
alternative engine: ``[barcode] engine``).

Always running. Formats: qr, micro_qr, datamatrix, pdf417, aztec, code128, code39, code93,
ean8, ean13, upca, upce, itf, codabar (zbar reads the linear ones and qr).

======  ===============================================  ================================
op      args                                             result
======  ===============================================  ================================
read    session, images?, formats?, region?, engine?     {engine, seconds, pages: [{image,
                                                         index, barcodes: [{format, text,
                                                         raw (base64), points [[x, y]]x4,
                                                         engine}]}]}
decode  blobs, formats?, region?, engine?                {engine, pages: [{index,
                                                         barcodes}]}
check   formats?, region?, engine?                       {engine, formats}: asked before
                                                         the pages of a job go out
======  ===============================================  ================================

``region`` is ``{left, top, width, height}`` in pixels of the page; points are always in
page pixels. Events: ``barcode.progress {session, done, total}`` (multi-page reads only).

The gateway's barcode jobs read page by page (``/api/v1/sessions/{sid}/barcodes``), and
``POST .../documents`` with ``split_by: "barcode"`` splits a batch at separator sheets.
"""
