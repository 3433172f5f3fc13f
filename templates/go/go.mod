module {{name}}

go 1.24

require weir.local/weir v0.0.0

replace weir.local/weir => {{sdk_path}}
