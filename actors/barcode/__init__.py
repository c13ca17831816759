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
======  ===============================================  ================================

``region`` is ``{left, top, width, height}`` in pixels of the page; points are always in
page pixels. Events: ``barcode.progress {session, done, total}``.

Not yet: the gateway's ``/barcodes`` job endpoint, splitting documents by separator
barcode, the CLI command and the demo panel (issue 9 goes on).
"""
