"""camera: webcams, document cameras and video sources; live view and capture.

On demand, like the scanner (``[ondemand] programs``). Sources: the machine's V4L2 devices
and ``[camera] sources = name=URL-or-file`` (MJPEG over HTTP, RTSP, a video file played in
a loop). Ids: ``camera:NAME``, ``camera:<by-id name>`` or ``camera:videoN``.

=======  =================================================  =============================
op       args                                               result
=======  =================================================  =============================
sources  refresh?                                           [{id, type: camera, name,
                                                             kind, device, open}]
options  source                                             {source, kind, size, fps, modes,
                                                             properties, options}
frame    source, after?, viewer?, resolution?, timeout?     {source, seq, width, height,
                                                             fps} + the JPEG blob
release  source, viewer                                     {released}
set      source, values                                     {properties}
scan     session, source, options? {resolution, interval,   job (as the scanner's)
         document}, pages? | batch
job      job, session?                                      job
jobs     session                                            [job]
cancel   job, session?                                      job
status                                                      {feeds, captures}
=======  =================================================  =============================

Events: ``scan.page``, ``scan.done``, ``scan.error`` (code device_gone, device_busy,
invalid_option, ...), as for scanners.
"""
