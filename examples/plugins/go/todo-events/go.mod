module weir.local/todoevents

go 1.24
