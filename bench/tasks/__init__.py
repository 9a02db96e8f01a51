"""Task modules and bare worker loops that the peer runners start as worker processes.

Every task does the same work: one Redis INCR on the counter key it is given (db 15); when
it is also given a notify key (latency scenarios) it INCRs and RPUSHes to that list in one
pipelined round trip, so the driver can BLPOP it.
"""
