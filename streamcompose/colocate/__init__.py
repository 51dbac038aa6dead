"""Co-located groups: several agents run by one worker process, passing records in memory
(the group's topology side is :mod:`streamcompose.topology.colocate`)."""
