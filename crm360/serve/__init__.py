"""What the users get: marketing segments and their exports, the segment page, the run report and
its charts, and the dbt docs of the published marts."""
