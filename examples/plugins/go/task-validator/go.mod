module task-validator

go 1.24

require (
	weir.local/todoevents v0.0.0
	weir.local/weir v0.0.0
)

replace (
	weir.local/todoevents => ../todo-events
	weir.local/weir => ../../../../plugins/sdk-go
)
