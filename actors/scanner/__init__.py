"""scanner: SANE scanners as sources, their options, and scan jobs into the buffer.

On demand: supervisord does not start it (``autostart=false``); the monitor starts it when
a session opens or a request waits for it, and stops it ``scanner_idle_stop`` seconds
after the last session closed. Operations (``scanbridge call scanner OP [JSON]``):

=======  =================================================  =============================
op       args                                               result
=======  =================================================  =============================
sources  refresh?                                           [{id, type, device, vendor,
                                                             model, kind, backend, busy}]
options  source, values?                                    {source, busy, options:
                                                             [descriptor], aliases}
scan     session, source, options?, pages? (1) | batch      {job, state, pages, images,
                                                             settings, ...}
job      job, session?                                      {job, state: running|done|
                                                             failed|cancelled, pages,
                                                             images, progress, error}
jobs     session                                            [job]
cancel   job, session?                                      job
=======  =================================================  =============================

Options are SANE option names (``tl-x``, ``test-picture``, ...) or aliases that work on
every device: ``resolution``, ``mode`` (color|gray|lineart), ``depth``, ``source``
(flatbed|adf|duplex), ``adf``, ``duplex``, ``page_size`` (A4, Letter, ..., max), ``area``
({left, top, width, height} in mm), ``brightness``, ``contrast``.

Events: ``scan.progress {session, job, page, percent, pages}``, ``scan.page {session, job,
page, image, pages}`` (after the buffer stored the page), ``scan.done {session, job,
state: done|cancelled, pages, images}``, ``scan.error {session, job, pages, images, code,
message, error}`` with code feeder_empty, jammed, cover_open, device_busy, io_error,
no_memory, access_denied, device_gone or actor_died.
"""
