"""buffer: every page of every session, durable on disk, edited and saved on request.

Always running. Pages live in ``cache/buffer/`` (see ``store``); a page is acknowledged
only once its file and index row are durable. Operations (``scanbridge call buffer OP
[JSON] [--blob FILE] [--out PATH]``); every op but the session ones takes ``session``:

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
import         blob; password?, dpi?, index?, source?,     {images: [info]}
               tags?
list           tags?, match? (any|all)                     [info] in page order
info           image                                       info + history
locate         image                                       {path, format, media_type,
                                                            bytes, etag}
get            image, format?, quality?, width?, height?   info + blob
thumbnail      image, size?                                info + JPEG blob
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
save           images?, format (pdf|tiff|jpeg|png|bmp|     {format, pages, bytes, ...} +
               gif), order? (given|buffer), title?,        blob(s), or {path} with dest
               author?, subject?, keywords?, pdfa?,
               compression? (auto|jpeg|lossless),
               quality?, tiff_compression?, dest?
=============  ==========================================  ================================

Image info: ``{id, index, width, height, dpi: [x, y], mode: bw|gray|color, bit_depth,
pixel_mode, format, bytes, source, created, tags, edits, meta, etag}``.

Events: ``buffer.changed {session, action: add|remove|modify|reorder, ids}``,
``buffer.import {session, done, total}``, ``buffer.save {session, done, total}``.
"""
