"""buffer: every page of every session, durable on disk, edited and saved on request.

Always running. Pages live in ``cache/buffer/`` (see ``store``); a page is acknowledged
only once its file and index row are durable. Operations (``scanbridge call buffer OP
[JSON] [--blob FILE] [--out PATH]``), besides every actor's ``ping`` and ``ops``, grouped
as their modules are (sessions, adding, reading, editing, saving); every op but
``open_session``, ``sessions`` and ``status`` takes ``session``:

=============  ==========================================  ================================
op             args                                        result
=============  ==========================================  ================================
open_session   session?, meta?                             {session, created, used, images,
                                                            meta, new, expires_after}
close_session  session                                     {session, removed}
session        session                                     {session, created, used, ...}
sessions       -                                           [session]
status         -                                           {memory, disk, sessions}
add            blob; format? (raw: width, height, mode),   image info; ``key`` makes a
               dpi?, source?, tags?, meta?, index?, key?   retried add return the first
stage          blob; format? (raw: width, height, mode),   {stage, width, height, mode,
               dpi? — stored durably, not listed yet       bytes}; listed by commit
commit         stage, source?, tags?, meta?, index?, key?  image info (in commit order)
import         blob, or incoming (a file the gateway       {images: [info]}
               spooled); password?, dpi?, index?,
               source?, tags?
list           tags?, match? (any|all)                     [info] in page order
info           image                                       info + history
locate         image                                       {path, format, media_type,
                                                            bytes, etag}
get            image, format?, quality?, width?, height?   {id, format, media_type, bytes,
                                                            etag} + blob
thumbnail      image, size?                                the same, JPEG
blank          images?, threshold?                         [{id, blank, ink}]
edit           image | images, ops: [{op, ...}]            [info]; ops: rotate(angle, fill),
                                                            flip, mirror, crop(left, top,
                                                            right, bottom), resize(width,
                                                            height, resample), bitdepth(mode
                                                            bw|gray|color, threshold, dither),
                                                            brightness(value),
                                                            contrast(value), invert, dpi(x, y)
undo           image                                       info
delete         images                                      {deleted}
reorder        order (every id once)                       [id]
move           images, index                               [id]
tag            images, add?, remove?                       [info]
save           images?, format? (pdf|tiff|jpeg|png|bmp|    {format, media_type, pages,
               gif), order? (given|buffer), title?,        images, bytes} + blob(s); a PDF
               author?, subject?, keywords?, pdfa?,        or TIFF with output=file or
               compression? (auto|jpeg|lossless),          dest: + path, no blob
               quality?, tiff_compression?, output?
               (blob|file), dest?, text_layers? (PDF)
=============  ==========================================  ================================

Image info: ``{id, index, width, height, dpi: [x, y], mode: bw|gray|color, bit_depth,
pixel_mode, format, bytes, source, created, tags, edits, meta, etag}``.

Events: ``buffer.changed {session, action: add|remove|modify|reorder, ids}`` (with
``closed: true`` when a session closes), ``session.opened {session, new}``,
``session.closed {session, reason: closed|expired}``, ``buffer.import {session, done,
total}``, ``buffer.save {session, done, total}``.
"""
