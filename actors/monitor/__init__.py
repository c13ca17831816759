"""monitor: crash and hang dumps, restarts of hung actors, on-demand programs.

Always running. Operations (``scanbridge call monitor OP [JSON]``):

=========  ==========================  ==============================================
op         args                        result
=========  ==========================  ==============================================
status     -                           {programs: [{name, group, state, pid, uptime,
                                        description, ondemand, holders}]}
dumps      -                           [{name, program, time, bytes, path}] newest first
hold       program, holder             {program, holders}: start and keep it running
release    program, holder             {program, holders}: idle delay starts at zero
ping, ops  -                           built-in (see broker.actor)
=========  ==========================  ==============================================

Events published: ``dump.written {program, kind: crash|hang, path}``.
Events followed: ``actor.state`` (hung), ``service.wanted``.
"""
