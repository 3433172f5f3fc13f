module weir.local/weir

go 1.24
